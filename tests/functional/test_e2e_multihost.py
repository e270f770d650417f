"""Several compute hosts, two of them with their own real libvirtd in their own
network namespace (deploy/lab/sim-host.sh), one on the machine's libvirtd, and
fake hosts on libvirt's test driver where a test needs failures or size."""
import concurrent.futures
import os
import sys

import pytest

from mininova_lab import services
from mininova_lab.sim_host import SimHost
from mininova_lab.stack import ROOT, Stack, qemu_img_create
from mininova_lab.waiting import wait_for

pytestmark = pytest.mark.real_services("rabbitmq", "postgresql", "libvirt", "http")

DOWN_AFTER = 6  # [scheduler] service_down_time in this stack


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("multihost")
    stack = Stack(workdir, network="",
                  extra_conf="[scheduler]\nservice_down_time = %d\n" % DOWN_AFTER)
    sims, procs = [], []
    try:
        stack.start()
        base = os.path.join(stack.workdir, "blank.qcow2")
        qemu_img_create(base, "1G")
        stack.add_image("blank", base)
        for name in ("sima", "simb"):
            sim = SimHost("%s-%s" % (name, stack.tag[-6:]), base_dir=str(workdir / "lab"))
            sim.up()
            sim.forward(stack.port)
            sims.append(sim)
            procs.append(start_sim_compute(stack, sim))
        hosts = {stack.host} | {sim.name for sim in sims}
        wait_for(lambda: hosts <= stack.computes_up(), 60, what="three compute hosts up")
        stack.sims, stack.sim_procs = sims, procs
        yield stack
    finally:
        for vm in stack.get("/v1/vms").json().get("vms", []) if stack.procs else []:
            stack.delete("/v1/vms/" + vm["id"])
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(20)
            except Exception:
                proc.kill()
        for sim in sims:
            sim.down()
        stack.stop()


def start_sim_compute(stack, sim, driver="libvirt"):
    """A compute agent inside the sim host's network namespace: it reaches
    RabbitMQ and the API only over the sim host's veth."""
    workdir = os.path.join(stack.workdir, sim.name)
    os.makedirs(workdir, exist_ok=True)
    conf = os.path.join(workdir, "compute.conf")
    with open(conf, "w") as f:
        f.write(f"""[DEFAULT]
host = {sim.name}
transport_url = {services.rabbit_url(stack.vhost, host=sim.gateway_ip)}

[compute]
instances_path = {workdir}/instances
image_cache_path = {workdir}/_base
image_api_url = http://{sim.gateway_ip}:{stack.port}
network_name =
compute_driver = {driver}

[libvirt]
connection_uri = {sim.libvirt_uri}
virt_type = qemu
""")
    log = open(os.path.join(stack.logs, "compute-%s.out" % sim.name), "ab")
    return sim.popen([sys.executable, "-m", "nova_compute.cmd", "--config-file",
                      stack.conf_path, "--config-file", conf, "--log-file",
                      os.path.join(stack.logs, "compute-%s.log" % sim.name)],
                     cwd=ROOT, stdout=log, stderr=log, stdin=open(os.devnull))


def create(stack, name, flavor="m1.tiny", **extra):
    r = stack.post("/v1/vms", dict({"name": name, "image": "blank", "flavor": flavor}, **extra))
    assert r.status_code == 202, r.text
    return r.json()["vm"]["id"]


def wait_all(stack, ids, status="ACTIVE", timeout=90):
    return [stack.wait_status(i, status, timeout=timeout) for i in ids]


def delete_all(stack, ids):
    for i in ids:
        stack.delete("/v1/vms/" + i)
    for i in ids:
        stack.wait_gone(i)


def service_id(stack, host):
    return [s["id"] for s in stack.get("/v1/services").json()["services"]
            if s["host"] == host and s["binary"] == "mininova-compute"][0]


def set_status(stack, host, status):
    r = stack.http.put("%s/v1/services/%d" % (stack.url, service_id(stack, host)),
                       json={"status": status, "disabled_reason": "test"}, timeout=10)
    assert r.status_code == 200, r.text


def test_spread_over_hosts_with_their_own_hypervisors(lab):
    ids = [create(lab, "spread-%d" % i) for i in range(3)]
    vms = wait_all(lab, ids)
    hosts = {vm["host"] for vm in vms}
    assert hosts == {lab.host} | {s.name for s in lab.sims}
    for vm in vms:  # each domain lives on its host's own libvirtd only
        sim = [s for s in lab.sims if s.name == vm["host"]]
        if sim:
            assert "mininova-" + vm["id"] in sim[0].virsh("list", "--name").stdout
    details = lab.get("/v1/hosts/" + lab.sims[0].name).json()["host"]
    assert details["memory_mb"]["used"] == 128 and len(details["vms"]) == 1
    delete_all(lab, ids)
    assert lab.get("/v1/hosts/" + lab.sims[0].name).json()["host"]["memory_mb"]["used"] == 0


def test_disabled_host_gets_nothing(lab):
    off = lab.sims[0].name
    set_status(lab, off, "disabled")
    try:
        ids = [create(lab, "nodisabled-%d" % i) for i in range(4)]
        assert off not in {vm["host"] for vm in wait_all(lab, ids)}
        delete_all(lab, ids)
    finally:
        set_status(lab, off, "enabled")


def test_anti_affinity_burst_and_affinity(lab):
    group = lab.post("/v1/server-groups", {"name": "apart", "policy": "anti-affinity"}).json()
    gid = group["server_group"]["id"]
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        ids = list(pool.map(lambda i: create(lab, "apart-%d" % i, group=gid), range(3)))
    assert len({vm["host"] for vm in wait_all(lab, ids)}) == 3
    fourth = create(lab, "apart-3", group=gid)  # three hosts, all taken
    fault = lab.wait_status(fourth, "ERROR")["fault"]["message"]
    assert "ServerGroupAntiAffinityFilter removed 3" in fault
    delete_all(lab, ids + [fourth])

    group = lab.post("/v1/server-groups", {"name": "together", "policy": "affinity"}).json()
    gid = group["server_group"]["id"]
    ids = [create(lab, "together-%d" % i, group=gid) for i in range(3)]
    assert len({vm["host"] for vm in wait_all(lab, ids)}) == 1
    delete_all(lab, ids)


def test_impossible_flavor_explains_each_filter(lab):
    lab.manage("flavor", "create", "m1.huge", "--vcpus", "1", "--ram", "10000000", "--disk", "1")
    vm = create(lab, "huge", flavor="m1.huge")
    fault = lab.wait_status(vm, "ERROR")["fault"]["message"]
    assert fault.startswith("No valid host was found. 3 hosts: RamFilter removed 3 (need "
                            "10000000 MB, max free "), fault
    delete_all(lab, [vm])


def test_failing_host_reschedules_then_all_failing_lists_attempts(lab, tmp_path):
    # Two hosts whose every spawn fails, made the most attractive (huge RAM).
    node = tmp_path / "node.xml"
    node.write_text("<node><cpu><mhz>2000</mhz><model>i686</model><active>16</active>"
                    "<nodes>1</nodes><sockets>1</sockets><cores>16</cores><threads>1</threads>"
                    "</cpu><memory>134217728</memory></node>")
    failing = []
    for name in ("bad1", "bad2"):
        host = "%s-%s" % (name, lab.tag[-6:])
        lab.start_extra_compute(host, extra_conf="compute_driver = fake-failing\n"
                                "[libvirt]\nconnection_uri = test://%s\n" % node)
        failing.append(host)
    try:
        vm = lab.wait_status(create(lab, "resched"), "ACTIVE")
        assert vm["host"] not in failing
        actions = lab.get("/v1/vms/%s/actions" % vm["id"]).json()["actions"]
        events = lab.get("/v1/vms/%s/actions/%s" % (vm["id"], actions[-1]["request_id"])).json()
        assert "rescheduled" in [e["event"] for e in events["action"]["events"]]
        delete_all(lab, [vm["id"]])

        # Only failing hosts left: three attempts, each named in the fault.
        for host in [lab.host] + [s.name for s in lab.sims]:
            set_status(lab, host, "disabled")
        lab.start_extra_compute("bad3-" + lab.tag[-6:],
                                extra_conf="compute_driver = fake-failing\n[libvirt]\n"
                                "connection_uri = test://%s\n" % node)
        failing.append("bad3-" + lab.tag[-6:])
        vm = create(lab, "doomed")
        fault = lab.wait_status(vm, "ERROR")["fault"]["message"]
        assert fault.startswith("Build failed on 3 hosts: "), fault
        for host in failing:
            assert host + ": " in fault
        delete_all(lab, [vm])
    finally:
        for host in [lab.host] + [s.name for s in lab.sims]:
            set_status(lab, host, "enabled")
        for host in failing:
            set_status(lab, host, "disabled")
            lab.stop_daemon("compute-" + host)


def test_dead_compute_stops_getting_vms(lab):
    sim, proc = lab.sims[1], lab.sim_procs[1]
    proc.kill()
    proc.wait(10)
    wait_for(lambda: sim.name not in lab.computes_up(), DOWN_AFTER + 10,
             what="%s reported down" % sim.name)
    ids = [create(lab, "afterdeath-%d" % i) for i in range(3)]
    assert sim.name not in {vm["host"] for vm in wait_all(lab, ids)}
    delete_all(lab, ids)
