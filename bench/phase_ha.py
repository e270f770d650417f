"""P9: what high availability of the message bus costs. The same two
measurements on the one-node broker with classic queues (the machine's
RabbitMQ, as every other phase) and on a three-node cluster of this run's
own with quorum queues (mininova_lab.private_services.RabbitCluster), one
after the other in the same run: POST -> ACTIVE of one VM at a time (as P1,
but on the in-memory fake hypervisor, so that only the control plane and its
bus are timed) and the burst throughput of the scale simulation (as P3).
Quorum queues replicate each message to a majority before confirming it:
the difference is that price."""
import tempfile
import time

import sqlalchemy as sa

from bench import scale_sim
from bench.harness import log, ms, pct
from mininova_lab import services
from mininova_lab.private_services import RabbitCluster
from mininova_lab.stack import Stack, qemu_img_create
from mininova_lab.waiting import wait_for

QUORUM_CONF = "[oslo_messaging_rabbit]\nrabbit_quorum_queue = true\n"
LIGHT = "[compute]\nreserved_host_memory_mb = 0\nsync_interval = 300\n"


def create_latency(workdir, broker, extra_conf, samples):
    """POST -> ACTIVE (seen in the VM's row) of ``samples`` VMs, one at a
    time, on a fake-driver stack; seconds each."""
    stack = Stack(workdir, compute_driver="fake", network="", debug=False, broker=broker,
                  extra_conf=LIGHT + extra_conf)
    try:
        stack.start()
        base = workdir + "/blank.qcow2"
        qemu_img_create(base, "1G")
        stack.add_image("blank", base)
        engine = sa.create_engine(stack.db_url)
        query = sa.text("SELECT vm_state FROM instances WHERE id = :id")
        out = []
        for i in range(samples + 1):  # the first warms the daemons' connections up
            t0 = time.monotonic()
            r = stack.post("/v1/vms", {"name": "p9-%03d" % i, "image": "blank",
                                       "flavor": "m1.tiny"})
            if r.status_code != 202:
                raise RuntimeError("POST /v1/vms answered %d: %s" % (r.status_code, r.text))
            vm_id = r.json()["vm"]["id"]

            def active():
                with engine.connect() as c:
                    state = c.execute(query, {"id": vm_id}).scalar()
                if state == "error":
                    raise RuntimeError("VM %s went ERROR" % vm_id)
                return state == "active"
            wait_for(active, 60, interval=0.005, what="VM %s ACTIVE" % vm_id)
            if i:
                out.append(time.monotonic() - t0)
        engine.dispose()
        return out
    finally:
        stack.stop()


def run(bench):
    a = bench.args
    log("P9: classic queues on one node against quorum queues on 3 nodes: %d creates one "
        "at a time, then %d VMs on %d hosts", a.p9_samples, a.p9_vms, a.p9_hosts)
    cluster = RabbitCluster(3)
    t0 = time.monotonic()
    cluster.create()
    results = {"cluster_up_s": round(time.monotonic() - t0, 1)}
    try:
        for setup, broker, conf in (("classic", services, ""), ("quorum", cluster, QUORUM_CONF)):
            with tempfile.TemporaryDirectory(prefix="mininova-p9-", dir=bench.workdir) as wd:
                lat = create_latency(wd + "/lat", broker, conf, a.p9_samples)
                sim = scale_sim.run(hosts=a.p9_hosts, vms=a.p9_vms, schedulers=2,
                                    workdir=wd + "/sim", threads=a.sim_threads,
                                    broker=broker, extra_conf=conf)
            results[setup] = {"create_p50_ms": ms(pct(lat, 50)),
                              "create_p95_ms": ms(pct(lat, 95)),
                              "create_samples_ms": [ms(s) for s in lat],
                              "vms_per_s": sim["vms_per_s"], "active": sim["active"],
                              "error": sim["error"], "accepted": sim["accepted"],
                              "post_p50_ms": sim["post_p50_ms"], "wall_s": sim["wall_s"]}
            log("  %s: %s", setup, results[setup])
    finally:
        cluster.destroy()
    r = bench.results
    r["p9"] = results
    for setup in ("classic", "quorum"):
        r["p9_%s_create_p50_ms" % setup] = results[setup]["create_p50_ms"]
        r["p9_%s_vms_per_s" % setup] = results[setup]["vms_per_s"]
