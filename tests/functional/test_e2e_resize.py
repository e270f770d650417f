"""Resize and cold migration on the lab: two sim hosts (deploy/lab/sim-host.sh,
each its own libvirtd, network namespace and "mininova" guest network), the
tiny guest (a real TCG boot), the whole stack on RabbitMQ and PostgreSQL.

- resize A -> B to a bigger flavor: VERIFY_RESIZE on B (the guest boots there
  from A's disk, grown to the new flavor's size, with the new memory), A's
  domain shut off and its disk set aside; revert: ACTIVE on A with the old
  flavor, nothing of it left on B; resize again and confirm: ACTIVE on B,
  nothing left on A; allocations and quota follow each step;
- cold migration B -> A (admin, a target host) and its confirm;
- B's compute killed (SIGKILL) while A powers the VM off: the conductor's
  finish_resize call on B times out, A defines the VM again (ACTIVE on A,
  migration "error"), B's allocation is freed; B's compute restarted refuses
  the stale message and holds nothing of the VM;
- A's compute killed once its disk is set aside: the move completes on B; a
  confirm while A is away is undone, and done once A is back;
  ``mininova-manage audit`` clean after each part.

The destination downloads the disk A set aside from A's libvirtd (its
MIGRATION_URI); hosts that cannot see each other's instances_path:
test_e2e_resize_remote.py."""
import json
import os
import subprocess

import pytest
import sqlalchemy as sa

from mininova_lab import sim_compute
from mininova_lab.waiting import wait_for

pytestmark = pytest.mark.real_services("rabbitmq", "postgresql", "libvirt", "http")

BASE_DIR = "/var/lib/mininova-lab-resize"
INDEXES = (60, 61)
STEP_TIMEOUT = 25      # [conductor] move_step_timeout
SHUTDOWN_TIMEOUT = 20  # [compute] shutdown_timeout (the tiny guest obeys ACPI in seconds)
BOOT = 240             # a TCG boot while other helpers' tests run


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    tiny = sim_compute.tiny_image()
    with sim_compute.lab_stack(
            tmp_path_factory.mktemp("resize"), ("rza", "rzb"), INDEXES, BASE_DIR,
            start_compute, guest_network=True,
            stack_options=dict(network="mininova", extra_conf=(
                "[conductor]\nmove_step_timeout = %d\n" % STEP_TIMEOUT)),
            setup=sim_compute.with_grown_flavor(tiny)) as stack:
        yield stack


def start_compute(stack, sim):
    return sim_compute.start_compute(stack, sim,
                                     extra="shutdown_timeout = %d" % SHUTDOWN_TIMEOUT)


def sql(stack, query, **params):
    with stack.engine.begin() as c:
        return c.execute(sa.text(query), params).all()


def domains(sim):
    """{domain name: state} of the sim host's libvirtd."""
    out = sim.virsh("list", "--all")
    assert out.returncode == 0, out.stderr
    rows = [line.split(None, 2) for line in out.stdout.splitlines()[2:] if line.strip()]
    return {r[1]: r[2] for r in rows}


def memory_kib(sim, domain):
    out = sim.virsh("dominfo", domain)
    line = next(x for x in out.stdout.splitlines() if x.startswith("Max memory"))
    return int(line.split()[2])


def held(lab, consumer):
    return {(r.host, r.vcpus, r.memory_mb, r.disk_gb) for r in sql(
        lab, "SELECT host, vcpus, memory_mb, disk_gb FROM allocations "
             "WHERE consumer_id = :c", c=consumer)}


def migration(lab, migration_uuid):
    return sql(lab, "SELECT status, source_host, dest_host, migration_type FROM migrations "
               "WHERE uuid = :u", u=migration_uuid)[0]


def settled(lab, vm_id, status, host, timeout=BOOT):
    return sim_compute.settled(lab, vm_id, status, host, timeout)


def booted(lab, vm_id):
    wait_for(lambda: "MININOVA-GUEST-BOOTED" in lab.get(
        "/v1/vms/%s/console?lines=200" % vm_id).json().get("output", ""), BOOT, 1,
        what="the guest's boot marker on its console")


def audit_clean(lab):
    assert json.loads(lab.manage("audit", "--json"))["findings"] == []


def disk_of(stack, sim, vm_id, aside=False):
    path = os.path.join(stack.workdir, sim.name, "instances", vm_id + ("_resize" if aside
                                                                         else ""), "disk")
    if not os.path.exists(path):
        return None
    out = subprocess.run(["qemu-img", "info", "-U", "--output=json", path],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)["virtual-size"]


def test_resize_revert_confirm_and_cold_migrate(lab):
    a, b = lab.sims
    lab.set_disabled(b.name, True)  # the VM starts on A
    try:
        r = lab.post("/v1/vms", {"name": "rz1", "image": "tiny", "flavor": "m1.tiny"})
        assert r.status_code == 202, r.text
        vm_id = r.json()["vm"]["id"]
        vm = settled(lab, vm_id, "ACTIVE", a.name)
    finally:
        lab.set_disabled(b.name, False)
    booted(lab, vm_id)
    domain, address = "mininova-" + vm_id, vm["addresses"][0]

    # Resize up: the guest comes up on B with the new flavor on A's disk, grown.
    r = lab.post("/v1/vms/%s/action" % vm_id, {"resize": {"flavor": "m1.grown"}})
    assert r.status_code == 202, r.text
    first = r.json()["migration"]
    vm = settled(lab, vm_id, "VERIFY_RESIZE", b.name)
    assert vm["flavor"]["name"] == "m1.grown" and vm["addresses"] == [address]
    assert domains(b)[domain] == "running" and domains(a)[domain] == "shut off"
    assert memory_kib(b, domain) == 192 * 1024
    assert disk_of(lab, b, vm_id) == 2 << 30 and disk_of(lab, a, vm_id, aside=True)
    assert held(lab, vm_id) == {(b.name, 1, 192, 2)}
    assert held(lab, first) == {(a.name, 1, 128, 1)}
    assert tuple(migration(lab, first)) == ("finished", a.name, b.name, "resize")
    booted(lab, vm_id)
    assert address["mac"] in b.virsh("net-dumpxml", "mininova").stdout

    # Revert: back on A with the old flavor; nothing left on B.
    lab.action(vm_id, {"revert_resize": {}})
    vm = settled(lab, vm_id, "ACTIVE", a.name)
    assert vm["flavor"]["name"] == "m1.tiny"
    assert domain not in domains(b) and domains(a)[domain] == "running"
    assert memory_kib(a, domain) == 128 * 1024
    assert not os.path.exists(os.path.join(lab.workdir, b.name, "instances", vm_id))
    assert held(lab, vm_id) == {(a.name, 1, 128, 1)} and held(lab, first) == set()
    assert migration(lab, first).status == "reverted"
    audit_clean(lab)

    # Resize again and confirm: on B for good, nothing left on A.
    second = lab.action(vm_id, {"resize": {"flavor": "m1.grown"}}).json()["migration"]
    settled(lab, vm_id, "VERIFY_RESIZE", b.name)
    lab.action(vm_id, {"confirm_resize": {}})
    settled(lab, vm_id, "ACTIVE", b.name)
    assert domain not in domains(a)
    assert not os.path.exists(os.path.join(lab.workdir, a.name, "instances",
                                           vm_id + "_resize"))
    assert held(lab, second) == set() and held(lab, vm_id) == {(b.name, 1, 192, 2)}
    assert migration(lab, second).status == "confirmed"
    assert address["mac"] not in a.virsh("net-dumpxml", "mininova").stdout
    audit_clean(lab)

    # Cold migration (admin) back to A, to the host asked for.
    third = lab.action(vm_id, {"migrate": {"host": a.name}}).json()["migration"]
    settled(lab, vm_id, "VERIFY_RESIZE", a.name)
    assert tuple(migration(lab, third)) == ("finished", b.name, a.name, "migration")
    lab.action(vm_id, {"confirm_resize": {}})
    vm = settled(lab, vm_id, "ACTIVE", a.name)
    assert vm["flavor"]["name"] == "m1.grown" and domain not in domains(b)
    booted(lab, vm_id)
    listed = lab.get("/v1/vms/%s/migrations" % vm_id).json()["migrations"]
    assert [(m["type"], m["status"]) for m in listed] == [
        ("migration", "confirmed"), ("resize", "confirmed"), ("resize", "reverted")]
    audit_clean(lab)
    lab.delete("/v1/vms/" + vm_id)
    lab.wait_gone(vm_id, timeout=120)


def test_destination_compute_killed_mid_move_leaves_the_vm_on_the_source(lab):
    a, b = lab.sims
    lab.set_disabled(b.name, True)
    try:
        r = lab.post("/v1/vms", {"name": "rz2", "image": "tiny", "flavor": "m1.tiny"})
        assert r.status_code == 202, r.text
        vm_id = r.json()["vm"]["id"]
        settled(lab, vm_id, "ACTIVE", a.name)
    finally:
        lab.set_disabled(b.name, False)
    booted(lab, vm_id)
    domain = "mininova-" + vm_id

    uuid = lab.action(vm_id, {"migrate": {"host": b.name}}).json()["migration"]
    # B prepared; A powers the VM off: B's compute dies before it can finish.
    wait_for(lambda: migration(lab, uuid).status in ("migrating", "post-migrating"), 120,
             0.05, what="the source's step")
    lab.computes[b.name].kill()
    lab.computes[b.name].wait(10)
    assert migration(lab, uuid).status in ("migrating", "post-migrating")

    vm = settled(lab, vm_id, "ACTIVE", a.name, timeout=STEP_TIMEOUT * 4 + BOOT)
    assert migration(lab, uuid).status == "error"
    assert domains(a)[domain] == "running" and domain not in domains(b)
    assert held(lab, vm_id) == {(a.name, 1, 128, 1)} and held(lab, uuid) == set()
    used = sql(lab, "SELECT vcpus_used, memory_mb_used FROM compute_nodes WHERE host = :h",
               h=b.name)[0]
    assert tuple(used) == (0, 0)
    actions = lab.get("/v1/vms/%s/actions" % vm_id).json()["actions"]
    assert actions[0]["action"] == "migrate" and actions[0]["result"] == "error"
    assert vm["flavor"]["name"] == "m1.tiny"
    booted(lab, vm_id)

    # B back: the stale finish_resize is refused, nothing of the VM appears there.
    lab.computes[b.name] = start_compute(lab, b)
    wait_for(lambda: b.name in lab.computes_up(), 60, what="B up again")
    assert domain not in domains(b)
    assert not os.path.exists(os.path.join(lab.workdir, b.name, "instances", vm_id))
    audit_clean(lab)
    lab.delete("/v1/vms/" + vm_id)
    lab.wait_gone(vm_id, timeout=120)


def test_source_compute_killed_after_the_copy_the_move_completes(lab):
    a, b = lab.sims
    lab.set_disabled(b.name, True)
    try:
        r = lab.post("/v1/vms", {"name": "rz3", "image": "tiny", "flavor": "m1.tiny"})
        assert r.status_code == 202, r.text
        vm_id = r.json()["vm"]["id"]
        settled(lab, vm_id, "ACTIVE", a.name)
    finally:
        lab.set_disabled(b.name, False)
    booted(lab, vm_id)
    domain = "mininova-" + vm_id

    uuid = lab.action(vm_id, {"resize": {"flavor": "m1.grown"}}).json()["migration"]
    # A powered the VM off and set its disk aside: its compute dies.
    wait_for(lambda: migration(lab, uuid).status in ("post-migrating", "finished"), 120, 0.05,
             what="the source's copy set aside")
    lab.computes[a.name].kill()
    lab.computes[a.name].wait(10)
    settled(lab, vm_id, "VERIFY_RESIZE", b.name)  # B needs nothing more of A
    assert domains(b)[domain] == "running"
    assert domains(a)[domain] == "shut off"  # one copy runs
    booted(lab, vm_id)

    # A confirm while A is away is undone (the VM awaits one again) ...
    lab.action(vm_id, {"confirm_resize": {}})
    settled(lab, vm_id, "VERIFY_RESIZE", b.name, timeout=STEP_TIMEOUT * 4)
    assert migration(lab, uuid).status == "finished"
    actions = lab.get("/v1/vms/%s/actions" % vm_id).json()["actions"]
    assert actions[0]["action"] == "confirm_resize" and actions[0]["result"] == "error"
    # ... and done once A is back.
    lab.computes[a.name] = start_compute(lab, a)
    wait_for(lambda: a.name in lab.computes_up(), 60, what="A up again")
    lab.action(vm_id, {"confirm_resize": {}})
    settled(lab, vm_id, "ACTIVE", b.name)
    assert domain not in domains(a) and migration(lab, uuid).status == "confirmed"
    assert held(lab, uuid) == set() and held(lab, vm_id) == {(b.name, 1, 192, 2)}
    audit_clean(lab)
    lab.delete("/v1/vms/" + vm_id)
    lab.wait_gone(vm_id, timeout=120)
