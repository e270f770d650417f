"""Evacuate on the lab: two sim hosts (deploy/lab/sim-host.sh, each its own
libvirtd, network namespace and "mininova" guest network), a VM on A, A's
compute killed with SIGKILL while its libvirtd keeps the guest running (the
host is "down", the guest lives: the split-brain case), evacuated past
service_down_time -> ACTIVE on B with its MAC and fixed IP (a DHCP host
entry on B's network); A's compute restarted -> A's copy destroyed before
A's first heartbeat; ``mininova-manage audit`` clean. And a rebuild that
fails on the destination (the image's download no longer matches its
checksum): the VM in ERROR on its source with the fault, nothing left on
the destination, its source allocation back."""
import json
import os
import subprocess
import sys

import pytest
import sqlalchemy as sa

from mininova_lab import sim_compute
from mininova_lab.stack import Stack, qemu_img_create
from mininova_lab.waiting import wait_for

pytestmark = pytest.mark.real_services("rabbitmq", "postgresql", "libvirt", "http")

DOWN_AFTER = 6  # [scheduler] service_down_time in this stack
OPENSTACK = os.path.join(os.path.dirname(sys.executable), "openstack")
PASSWORD = "evac secret"
BASE_DIR = "/var/lib/mininova-lab-evac"
INDEXES = (80, 81)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("evacuate")
    stack = Stack(workdir, network="mininova",
                  extra_conf="[scheduler]\nservice_down_time = %d\n" % DOWN_AFTER)
    try:
        stack.start(compute=False)
        stack.manage("user", "create", "osc-admin", "--project", "admin", "--role", "admin",
                     "--password-stdin", stdin=PASSWORD + "\n")
        with open(os.path.join(stack.workdir, "clouds.yaml"), "w") as f:
            json.dump({"clouds": {"admin": {
                "auth": {"auth_url": stack.url + "/identity/v3", "username": "osc-admin",
                         "password": PASSWORD, "project_name": "admin",
                         "user_domain_name": "Default", "project_domain_name": "Default"},
                "region_name": "RegionOne", "identity_api_version": 3}}}, f)
        base = os.path.join(stack.workdir, "blank.qcow2")
        qemu_img_create(base, "1G")
        stack.add_image("blank", base)
        with sim_compute.lab_hosts(stack, ("eva", "evb"), INDEXES, BASE_DIR,
                                   start_compute, guest_network=True) as sims:
            stack.sims = sims
            stack.engine = sa.create_engine(stack.db_url)
            try:
                yield stack
            finally:
                stack.delete_all_vms(timeout=60)
    finally:
        if getattr(stack, "engine", None) is not None:
            stack.engine.dispose()
        stack.stop()


def start_compute(stack, sim):
    """The compute agent in ``sim``'s network namespace, its VMs on the
    sim's "mininova" network."""
    return sim_compute.start_compute(stack, sim)


def osc(stack, *args):
    """``openstack --os-cloud admin --os-compute-api-version 2.1 ARGS``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env["OS_CLIENT_CONFIG_FILE"] = os.path.join(stack.workdir, "clouds.yaml")
    result = subprocess.run([OPENSTACK, "--os-cloud", "admin", "--os-compute-api-version",
                             "2.1", *args], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result


def sql(stack, query, **params):
    with stack.engine.begin() as c:
        return c.execute(sa.text(query), params).first()


def domains(sim):
    out = sim.virsh("list", "--name")
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split())


def test_evacuate_a_vm_of_a_killed_compute_and_the_host_comes_back(lab):
    a, b = lab.sims
    lab.set_disabled(b.name, True)  # the VM goes to A
    try:
        ids = []
        for name in ("evac1", "evac2"):
            r = lab.post("/v1/vms", {"name": name, "image": "blank", "flavor": "m1.tiny"})
            assert r.status_code == 202, r.text
            ids.append(r.json()["vm"]["id"])
        vm, vm2 = (lab.wait_status(i, "ACTIVE", timeout=180) for i in ids)
    finally:
        lab.set_disabled(b.name, False)
    vm_id, vm2_id = ids
    assert vm["host"] == vm2["host"] == a.name
    domain, domain2 = "mininova-" + vm_id, "mininova-" + vm2_id
    address, address2 = vm["addresses"][0], vm2["addresses"][0]
    assert address["ip"] and address2["ip"], (vm, vm2)

    # A's compute dies; its libvirtd (and the guest) live on.
    r = lab.post("/v1/vms/%s/action" % vm_id, {"evacuate": {}})
    assert r.status_code == 409 and "still up" in r.json()["error"]["message"], r.text
    lab.computes[a.name].kill()
    lab.computes[a.name].wait(10)
    wait_for(lambda: a.name not in lab.computes_up(), DOWN_AFTER * 4,
             what="A counted down")
    assert {domain, domain2} <= domains(a)

    r = lab.post("/v1/vms/%s/action" % vm_id, {"evacuate": {"host": a.name}})
    assert r.status_code == 400 and "own host" in r.json()["error"]["message"], r.text
    r = lab.post("/v1/vms/%s/action" % vm_id, {"evacuate": {}})
    assert r.status_code == 202, r.text
    migration = r.json()["migration"]
    vm = wait_for(lambda: (lambda v: v if v["status"] == "ACTIVE" and v["host"] == b.name
                           else None)(lab.vm(vm_id)), 180, what="VM ACTIVE on B")
    assert vm["addresses"] == [address]  # its MAC and fixed IP
    assert domain in domains(b)
    net = b.virsh("net-dumpxml", "mininova").stdout
    assert address["mac"] in net and address["ip"] in net  # B's DHCP host entry
    assert domain in domains(a)  # the split brain: A is down, its guest runs
    # The other through the openstack CLI at Nova 2.1 (onSharedStorage false).
    # Not with its --wait: osc-lib lower-cases the status it reads but this
    # command waits for "ACTIVE" in capitals, so that wait never ends.
    osc(lab, "server", "evacuate", vm2_id)
    vm2 = wait_for(lambda: (lambda v: v if v["status"] == "ACTIVE" and v["host"] == b.name
                            else None)(lab.vm(vm2_id)), 180, what="VM 2 ACTIVE on B")
    assert vm2["addresses"] == [address2]
    assert domain2 in domains(b) and domain2 in domains(a)
    row = sql(lab, "SELECT status, source_host, dest_host FROM migrations WHERE uuid = :u",
              u=migration)
    assert tuple(row) == ("done", a.name, b.name)
    # Down, A is not audited; the source allocation its evacuation holds is no orphan.
    assert json.loads(lab.manage("audit", "--json", "--skip-down"))["findings"] == []

    # A's compute comes back: its copy goes before its first heartbeat.
    before = sql(lab, "SELECT last_heartbeat FROM services WHERE host = :h "
                 "AND \"binary\" = 'mininova-compute'", h=a.name)[0]
    lab.computes[a.name] = start_compute(lab, a)

    def beat():
        now = sql(lab, "SELECT last_heartbeat FROM services WHERE host = :h "
                  "AND \"binary\" = 'mininova-compute'", h=a.name)[0]
        if now == before:
            return None
        return now, sql(lab, "SELECT status, updated_at FROM migrations WHERE uuid = :u",
                        u=migration)
    first_beat, (status, cleaned_at) = wait_for(beat, 120, 0.05, what="A's first heartbeat")
    assert status == "completed" and cleaned_at <= first_beat
    assert not {domain, domain2} & domains(a)
    net_a = a.virsh("net-dumpxml", "mininova").stdout
    assert address["mac"] not in net_a and address2["mac"] not in net_a
    assert domain in domains(b) and lab.vm(vm_id)["status"] == "ACTIVE"
    held = sql(lab, "SELECT count(*) FROM allocations WHERE consumer_id = :u", u=migration)[0]
    assert held == 0
    wait_for(lambda: a.name in lab.computes_up(), 30, what="A up again")
    assert json.loads(lab.manage("audit", "--json"))["findings"] == []  # and exit 0
    assert sql(lab, "SELECT count(*) FROM migrations WHERE status <> 'completed'")[0] == 0
    for i in ids:
        lab.delete("/v1/vms/" + i)
    for i in ids:
        lab.wait_gone(i, timeout=120)
    assert not {domain, domain2} & domains(b)


def test_a_rebuild_failing_on_the_destination_leaves_the_vm_in_error_on_its_source(lab):
    a, b = lab.sims
    base = os.path.join(lab.workdir, "blank2.qcow2")
    qemu_img_create(base, "1G")
    image = lab.add_image("blank2", base)  # cached on A only, by the build below
    lab.set_disabled(b.name, True)
    try:
        r = lab.post("/v1/vms", {"name": "evac3", "image": "blank2", "flavor": "m1.tiny"})
        assert r.status_code == 202, r.text
        vm_id = r.json()["vm"]["id"]
        vm = lab.wait_status(vm_id, "ACTIVE", timeout=180)
    finally:
        lab.set_disabled(b.name, False)
    assert vm["host"] == a.name
    domain, address = "mininova-" + vm_id, vm["addresses"][0]
    lab.computes[a.name].kill()
    lab.computes[a.name].wait(10)
    wait_for(lambda: a.name not in lab.computes_up(), DOWN_AFTER * 4, what="A counted down")
    # The store's copy no longer matches its checksum: B's download fails.
    location = sql(lab, "SELECT location FROM images WHERE id = :i", i=image["id"])[0]
    with open(location, "ab") as f:
        f.write(b"corrupted")

    r = lab.post("/v1/vms/%s/action" % vm_id, {"evacuate": {"host": b.name}})
    assert r.status_code == 202, r.text
    migration = r.json()["migration"]
    vm = lab.wait_status(vm_id, "ERROR", timeout=180)
    assert vm["host"] == a.name and "Evacuation to %s failed" % b.name in vm["fault"]["message"], vm
    assert domain not in domains(b)  # nothing left on the destination
    assert address["mac"] not in b.virsh("net-dumpxml", "mininova").stdout
    assert sql(lab, "SELECT status FROM migrations WHERE uuid = :u", u=migration)[0] == "failed"
    held = sql(lab, "SELECT string_agg(consumer_id || '@' || host, ',') FROM allocations "
               "WHERE consumer_id IN (:v, :u)", v=vm_id, u=migration)[0]
    assert held == "%s@%s" % (vm_id, a.name)  # its source allocation back, B's freed
    assert domain in domains(a)  # the VM's only copy: A keeps it

    lab.computes[a.name] = start_compute(lab, a)
    wait_for(lambda: a.name in lab.computes_up(), 120, what="A up again")
    assert domain in domains(a) and lab.vm(vm_id)["status"] == "ERROR"
    assert json.loads(lab.manage("audit", "--json"))["findings"] == []
    lab.delete("/v1/vms/" + vm_id)
    lab.wait_gone(vm_id, timeout=120)
    assert domain not in domains(a) and domain not in domains(b)


def test_a_host_only_cut_off_destroys_its_copy_once_it_is_back(lab):
    """A's network cable is pulled (its compute lives on, unheard), its VM
    evacuated; the cable back, A's compute, never restarted, destroys its
    copy at its next reconcile ([compute] sync_interval, 5 s here)."""
    a, b = lab.sims
    lab.set_disabled(b.name, True)
    try:
        r = lab.post("/v1/vms", {"name": "evac4", "image": "blank", "flavor": "m1.tiny"})
        assert r.status_code == 202, r.text
        vm_id = r.json()["vm"]["id"]
        assert lab.wait_status(vm_id, "ACTIVE", timeout=180)["host"] == a.name
    finally:
        lab.set_disabled(b.name, False)
    domain = "mininova-" + vm_id
    a.set_link(False)
    try:
        wait_for(lambda: a.name not in lab.computes_up(), DOWN_AFTER * 4,
                 what="A counted down")
        r = lab.post("/v1/vms/%s/action" % vm_id, {"evacuate": {}})
        assert r.status_code == 202, r.text
        migration = r.json()["migration"]
        wait_for(lambda: (lambda v: v["status"] == "ACTIVE" and v["host"] == b.name)(
            lab.vm(vm_id)), 180, what="VM ACTIVE on B")
        assert domain in domains(a) and domain in domains(b)
    finally:
        a.set_link(True)
    wait_for(lambda: domain not in domains(a), 120, what="A's copy destroyed")
    wait_for(lambda: sql(lab, "SELECT status FROM migrations WHERE uuid = :u",
                         u=migration)[0] == "completed", 30, what="the evacuation completed")
    assert lab.computes[a.name].poll() is None  # never restarted
    assert domain in domains(b) and lab.vm(vm_id)["status"] == "ACTIVE"
    wait_for(lambda: a.name in lab.computes_up(), 60, what="A up again")
    assert json.loads(lab.manage("audit", "--json"))["findings"] == []
    lab.delete("/v1/vms/" + vm_id)
    lab.wait_gone(vm_id, timeout=120)
