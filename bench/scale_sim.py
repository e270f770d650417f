"""Scale simulation: many compute hosts on a fake hypervisor, two
schedulers, one burst of VM creates; reports how fast VMs reach ACTIVE, the
scheduling latency and whether any host was over-committed.

    python -m bench.scale_sim --hosts 50 --vms 1000        # full size, by hand
    python -m bench.scale_sim --hosts 10 --vms 200         # the CI size

Everything but the hypervisor is real: the API on waitress, RabbitMQ (a
private vhost), PostgreSQL (a private database), the scheduler and conductor
daemons and one compute daemon process per simulated host. The hypervisor is
``compute_driver = fake`` (in memory, no libvirt: cheap per host) unless
``--compute-driver fake-libvirt`` asks for libvirt's test driver (the libvirt
driver's own code on every host; both report the same size of host).
"""
import argparse
import concurrent.futures
import json
import os
import sys
import tempfile
import time

import requests
import sqlalchemy as sa

from bench.load import percentile
from mininova_lab import services
from mininova_lab.stack import Stack, qemu_img_create
from mininova_lab.waiting import wait_for


def cpu_seconds(procs):
    """CPU time (user + system) each daemon process has used so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    result = {}
    for name, proc in procs.items():
        try:
            with open("/proc/%d/stat" % proc.pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            result[name] = round((int(fields[11]) + int(fields[12])) / ticks, 2)
        except OSError:
            pass
    return result


def _proc_cpu(pid, ticks):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / ticks


def service_cpu_seconds(db_name):
    """CPU seconds used so far by the PostgreSQL backends of ``db_name``
    ({pid: s}, per backend: they come and go) and by RabbitMQ (beam.smp,
    shared with whatever else uses the broker: host-wide)."""
    ticks = os.sysconf("SC_CLK_TCK")
    backends, rabbit = {}, 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                cmdline = f.read().replace(b"\0", b" ")
            if cmdline.startswith(b"postgres: ") and (" %s " % db_name).encode() in cmdline:
                backends[int(entry)] = _proc_cpu(int(entry), ticks)
            elif b"beam.smp" in cmdline and b"rabbit" in cmdline:
                rabbit += _proc_cpu(int(entry), ticks)
        except OSError:
            continue
    return backends, rabbit


def run(hosts, vms, schedulers, workdir, threads, observer=None, compute_driver="fake",
        broker=services, extra_conf=""):
    """``observer`` (optional): burst_started(stack) and burst_settled(stack)
    are called around the burst (bench.run profiles the daemons there).
    ``broker``, ``extra_conf``: as Stack's (P9: a RabbitCluster, quorum queues)."""
    stack = Stack(workdir, compute_driver=compute_driver, network="", debug=False,
                  broker=broker, extra_conf=extra_conf)
    # Sim hosts: no memory reserved, slow periodic work (they have no guests).
    sim_conf = ("reserved_host_memory_mb = 0\nsync_interval = 300\n"
                "address_poll_interval = 5\nheartbeat_interval = 5\n")
    try:
        stack.start(schedulers=schedulers, compute=False)
        base = os.path.join(workdir, "blank.qcow2")
        qemu_img_create(base, "1G")
        stack.add_image("blank", base)
        names = ["sim%03d" % i for i in range(hosts)]
        t0 = time.monotonic()
        for name in names:
            stack.start_extra_compute(name, extra_conf=sim_conf, wait=False)
        wait_for(lambda: set(names) <= stack.computes_up(), 120, interval=0.5,
                 what="%d simulated hosts to report" % hosts)
        print("%d simulated hosts up in %.1f s" % (hosts, time.monotonic() - t0))

        session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=threads)
        session.mount("http://", adapter)
        session.headers["X-Auth-Token"] = stack.http.headers["X-Auth-Token"]  # admin: no quota

        def post(i):
            t = time.monotonic()
            r = session.post(stack.url + "/v1/vms", json={
                "name": "vm%05d" % i, "image": "blank", "flavor": "m1.tiny"}, timeout=60)
            return r.status_code, time.monotonic() - t

        engine = sa.create_engine(stack.db_url)
        cpu_before = cpu_seconds(stack.procs)
        pg_before, rabbit_before = service_cpu_seconds(stack.db_name)
        client_before = time.process_time()
        if observer is not None:
            observer.burst_started(stack)
        burst_start = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            results = list(pool.map(post, range(vms)))
        post_done = time.monotonic() - burst_start
        accepted = sum(1 for code, _ in results if code == 202)
        if not accepted:  # else the wait below would never end
            raise RuntimeError("no POST was accepted (status %s)"
                               % sorted({code for code, _ in results}))

        def settled():
            with engine.connect() as c:
                rows = dict(c.execute(sa.text(
                    "SELECT vm_state, count(*) FROM instances WHERE deleted_at IS NULL "
                    "GROUP BY vm_state")).all())
            return rows if rows.get("building", 0) == 0 else None
        states = wait_for(settled, 600, interval=0.2, what="every VM ACTIVE or ERROR")
        wall = time.monotonic() - burst_start
        pg_after, rabbit_after = service_cpu_seconds(stack.db_name)
        client_cpu = time.process_time() - client_before
        if observer is not None:
            observer.burst_settled(stack)

        with engine.connect() as c:
            overcommit = c.execute(sa.text(
                "SELECT count(*) FROM compute_nodes WHERE "
                "memory_mb_used > memory_mb * 1.5 OR vcpus_used > vcpus * 16 "
                "OR local_gb_used > local_gb")).scalar()
            # Allocations must add up to what each host holds.
            mismatched = c.execute(sa.text(
                "SELECT count(*) FROM compute_nodes n LEFT JOIN (SELECT host, sum(memory_mb) m "
                "FROM allocations GROUP BY host) c ON c.host = n.host "
                "WHERE n.memory_mb_used <> coalesce(c.m, 0)")).scalar()
            sched = [float(r[0]) for r in c.execute(sa.text(
                "SELECT extract(epoch FROM s.finish_time - a.start_time) FROM instance_actions a "
                "JOIN instance_action_events s ON s.action_id = a.id AND s.event = 'scheduled' "
                "WHERE a.action = 'create'"))]
            faults = [r[0] for r in c.execute(sa.text(
                "SELECT fault FROM instances WHERE vm_state = 'error'"))]
            last_active = float(c.execute(sa.text(
                "SELECT extract(epoch FROM max(launched_at) - min(created_at)) FROM instances "
                "WHERE vm_state = 'active'")).scalar() or 0)
        engine.dispose()
        cpu = {k: v - cpu_before.get(k, 0) for k, v in cpu_seconds(stack.procs).items()}
        active = states.get("active", 0)
        result = {
            "hosts": hosts, "vms": vms, "schedulers": schedulers, "compute_driver": compute_driver,
            "accepted": accepted, "active": active, "error": states.get("error", 0),
            "post_burst_s": round(post_done, 2),
            "post_p50_ms": round(percentile([d for _, d in results], 50) * 1000, 1),
            "wall_s": round(wall, 2),
            "vms_per_s": round(active / (last_active or wall), 1),
            "sched_p50_ms": round(percentile(sched, 50) * 1000, 1) if sched else None,
            "sched_p95_ms": round(percentile(sched, 95) * 1000, 1) if sched else None,
            "overcommit": overcommit, "allocation_mismatch": mismatched,
            "no_valid_host": sum(1 for f in faults if f.startswith("No valid host")),
            # CPU seconds each kind of daemon spent from the burst to the end
            "cpu_s": {"api": round(cpu.get("api", 0), 2),
                      "schedulers": round(sum(v for k, v in cpu.items() if k.startswith("sched")), 2),
                      "conductors": round(sum(v for k, v in cpu.items()
                                              if k.startswith("conductor")), 2),
                      "computes": round(sum(v for k, v in cpu.items() if k.startswith("compute")), 2),
                      # backends of the sim's database (ended ones are missed)
                      "postgres": round(sum(v - pg_before.get(pid, 0.0)
                                            for pid, v in pg_after.items()), 2),
                      # the broker is shared with anything else running: host-wide
                      "rabbitmq_host_wide": round(rabbit_after - rabbit_before, 2),
                      # this process: the POSTs and the watching of the DB
                      "load_generator": round(client_cpu, 2)},
        }
        return result
    finally:
        stack.stop()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--hosts", type=int, default=50)
    p.add_argument("--vms", type=int, default=1000)
    p.add_argument("--schedulers", type=int, default=2)
    p.add_argument("--threads", type=int, default=32, help="concurrent POSTs")
    p.add_argument("--compute-driver", default="fake", choices=["fake", "fake-libvirt"],
                   help="the simulated hosts' hypervisor (default: fake, in memory)")
    p.add_argument("--json", help="also write the result here")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mininova-sim-") as workdir:
        result = run(args.hosts, args.vms, args.schedulers, workdir, args.threads,
                     compute_driver=args.compute_driver)
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0 if result["overcommit"] == 0 and result["allocation_mismatch"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
