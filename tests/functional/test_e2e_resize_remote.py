"""Resize and cold migration between hosts that share no filesystem, on the
lab: two sim hosts (deploy/lab/sim-host.sh), each compute agent in its host's
own mount namespace with its instances in the same path there
(sim_compute.PRIVATE_INSTANCES), a directory of its own the other host's
compute and libvirtd cannot see. The destination fetches the disk the source
set aside from the source's libvirtd (its MIGRATION_URI, a storage volume
download), as separate machines would.

The tiny guest's user_data counts its boots in a sector of its disk and
prints what it read there: the count goes on across each move (the data the
guest wrote arrived), and back on the source after a revert.

- cold migration A -> B, revert (back on A), resize to B, confirm;
- A's libvirtd unreachable from B (its port closed in A's network namespace)
  during a cold migration: the download fails, the VM is back ACTIVE on A
  with its disk, nothing of it on B; once reachable again, the move works."""
import base64
import json
import os
import re
import subprocess
import uuid

import pytest

from mininova_lab import sim_compute
from mininova_lab.waiting import wait_for

pytestmark = pytest.mark.real_services("rabbitmq", "postgresql", "libvirt", "http")

BASE_DIR = "/var/lib/mininova-lab-rdisk"
INDEXES = (110, 111)
STEP_TIMEOUT = 60      # [conductor] move_step_timeout
SHUTDOWN_TIMEOUT = 20  # [compute] shutdown_timeout (the tiny guest obeys ACPI in seconds)
BOOT = 240             # a TCG boot while other helpers' tests run
SECTOR = 1000          # between the MBR and the partition at 2048: no file system's
SEEN = re.compile(r"MININOVA-DISK-SEEN \[([A-Za-z0-9-]*)\]")
WROTE = re.compile(r"MININOVA-MARK-WRITTEN (\d+)")


def boot_counter(mark):
    """user_data: print the sector, then write ``<mark>-<boots>`` there."""
    read = "dd if=/dev/vda bs=512 skip=%d count=1 2>/dev/null | tr -cd 'A-Za-z0-9-'" % SECTOR
    lines = ["#!/bin/sh", "seen=$(%s)" % read, 'echo "MININOVA-DISK-SEEN [$seen]"', "n=0",
             'case "$seen" in %s-*) n=${seen##*-} ;; esac' % mark, "n=$((n + 1))",
             "{ printf '%s-%%d' $n; head -c 512 /dev/zero; } | head -c 512 | "
             "dd of=/dev/vda bs=512 seek=%d conv=notrunc,fsync 2>/dev/null" % (mark, SECTOR),
             "sync", 'echo "MININOVA-MARK-WRITTEN $n"']
    return base64.b64encode(("\n".join(lines) + "\n").encode()).decode()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    tiny = sim_compute.tiny_image()
    with sim_compute.lab_stack(
            tmp_path_factory.mktemp("rdisk"), ("rda", "rdb"), INDEXES, BASE_DIR,
            start_compute,
            stack_options=dict(network="mininova", extra_conf=(
                "[conductor]\nmove_step_timeout = %d\n" % STEP_TIMEOUT)),
            setup=sim_compute.with_grown_flavor(tiny)) as stack:
        yield stack


def start_compute(stack, sim):
    # No NIC: what moves is the disk (the fixed IP's move is test_e2e_resize's).
    return sim_compute.start_compute(stack, sim, private=True, network="",
                                     extra="shutdown_timeout = %d" % SHUTDOWN_TIMEOUT)


def instances(sim):
    return sim_compute.instances_path(None, sim, private=True)


def sees(sim, path):
    """Whether ``path`` exists for the host's compute (in its namespaces)."""
    return subprocess.run(sim.private_argv(["test", "-e", path], cwd="/")).returncode == 0


def domains(sim):
    out = sim.virsh("list", "--all")
    assert out.returncode == 0, out.stderr
    rows = [line.split(None, 2) for line in out.stdout.splitlines()[2:] if line.strip()]
    return {r[1]: r[2] for r in rows}


def settled(lab, vm_id, status, host, timeout=BOOT):
    return sim_compute.settled(lab, vm_id, status, host, timeout)


def console(lab, vm_id):
    r = lab.get("/v1/vms/%s/console?lines=400" % vm_id)
    return r.json().get("output", "") if r.status_code == 200 else ""


def boots_written(lab, vm_id, count):
    """Wait until the guest wrote its ``count``-th boot; what it read first."""
    def check():
        text = console(lab, vm_id)
        wrote = [int(n) for n in WROTE.findall(text)]
        return [SEEN.findall(text)[-1]] if wrote and wrote[-1] == count else None
    return wait_for(check, BOOT, 1, what="the guest's boot %d written to its disk" % count)[0]


def migration(lab, vm_id, migration_uuid):
    rows = lab.get("/v1/vms/%s/migrations" % vm_id).json()["migrations"]
    return next(m for m in rows if m["id"] == migration_uuid)


def audit_clean(lab):
    assert json.loads(lab.manage("audit", "--json"))["findings"] == []


def boot_on(lab, a, b, name, mark):
    lab.set_disabled(b.name, True)  # the VM starts on A
    try:
        r = lab.post("/v1/vms", {"name": name, "image": "tiny", "flavor": "m1.tiny",
                                 "user_data": boot_counter(mark)})
        assert r.status_code == 202, r.text
        vm_id = r.json()["vm"]["id"]
        settled(lab, vm_id, "ACTIVE", a.name)
    finally:
        lab.set_disabled(b.name, False)
    assert boots_written(lab, vm_id, 1) == ""  # a fresh disk
    return vm_id


def test_moves_carry_the_disk_between_hosts_that_share_no_filesystem(lab):
    a, b = lab.sims
    assert instances(a) != instances(b)
    mark = "MARK-%s" % uuid.uuid4().hex[:8]
    vm_id = boot_on(lab, a, b, "rd1", mark)
    domain = "mininova-" + vm_id
    a_dir = os.path.join(sim_compute.PRIVATE_INSTANCES, vm_id)
    assert os.path.isfile(os.path.join(instances(a), vm_id, "disk"))
    assert sees(a, a_dir) and not sees(b, a_dir)  # B cannot read A's disk by its path

    # Cold migration to B: the guest there reads what it wrote on A.
    first = lab.action(vm_id, {"migrate": {"host": b.name}}).json()["migration"]
    settled(lab, vm_id, "VERIFY_RESIZE", b.name)
    assert boots_written(lab, vm_id, 2) == "%s-1" % mark
    assert domains(b)[domain] == "running" and domains(a)[domain] == "shut off"
    assert os.path.isfile(os.path.join(instances(a), vm_id + "_resize", "disk"))
    assert not sees(b, a_dir + "_resize")
    assert "disk.part" not in os.listdir(os.path.join(instances(b), vm_id))
    assert (migration(lab, vm_id, first)["status"], migration(lab, vm_id, first)["type"]) == (
        "finished", "migration")

    # Revert: back on A on the disk it set aside (B's boot never reached it).
    lab.action(vm_id, {"revert_resize": {}})
    settled(lab, vm_id, "ACTIVE", a.name)
    assert boots_written(lab, vm_id, 2) == "%s-1" % mark
    assert domain not in domains(b) and not os.path.exists(os.path.join(instances(b), vm_id))
    audit_clean(lab)

    # Resize to B (a bigger flavor) and confirm: the second boot on A went along.
    lab.action(vm_id, {"resize": {"flavor": "m1.grown"}})
    settled(lab, vm_id, "VERIFY_RESIZE", b.name)
    assert boots_written(lab, vm_id, 3) == "%s-2" % mark
    lab.action(vm_id, {"confirm_resize": {}})
    vm = settled(lab, vm_id, "ACTIVE", b.name)
    assert vm["flavor"]["name"] == "m1.grown" and domain not in domains(a)
    assert not os.path.exists(os.path.join(instances(a), vm_id + "_resize"))
    assert not os.path.exists(os.path.join(instances(a), vm_id))
    assert "mininova-moving-" not in a.virsh("pool-list", "--all").stdout
    audit_clean(lab)
    lab.delete("/v1/vms/" + vm_id)
    lab.wait_gone(vm_id, timeout=120)


def libvirt_port(sim, closed):
    """Close (reset every connection) or open again the sim host's libvirtd
    TCP port to the other hosts: its own compute uses the unix socket."""
    rule = ["INPUT", "-p", "tcp", "--dport", "16509", "-j", "REJECT",
            "--reject-with", "tcp-reset"]
    out = sim.run(["iptables", "-I" if closed else "-D", *rule], capture_output=True,
                  text=True, timeout=30)
    assert out.returncode == 0, out.stderr


def test_a_source_unreachable_leaves_the_vm_on_it_and_nothing_on_the_destination(lab):
    a, b = lab.sims
    mark = "MARK-%s" % uuid.uuid4().hex[:8]
    vm_id = boot_on(lab, a, b, "rd2", mark)
    domain = "mininova-" + vm_id

    libvirt_port(a, closed=True)
    try:
        failed = lab.action(vm_id, {"migrate": {"host": b.name}}).json()["migration"]
        vm = settled(lab, vm_id, "ACTIVE", a.name, timeout=STEP_TIMEOUT * 4 + BOOT)
        assert migration(lab, vm_id, failed)["status"] == "error"
        assert vm["flavor"]["name"] == "m1.tiny"
        assert domains(a)[domain] == "running" and domain not in domains(b)
        assert not os.path.exists(os.path.join(instances(b), vm_id))
        assert os.path.isfile(os.path.join(instances(a), vm_id, "disk"))
        assert not os.path.exists(os.path.join(instances(a), vm_id + "_resize"))
        # Its disk as it was: the guest, started again on it, goes on counting.
        assert boots_written(lab, vm_id, 2) == "%s-1" % mark
        actions = lab.get("/v1/vms/%s/actions" % vm_id).json()["actions"]
        assert actions[0]["action"] == "migrate" and actions[0]["result"] == "error"
        audit_clean(lab)
    finally:
        libvirt_port(a, closed=False)

    # Reachable again: the same move goes through.
    lab.action(vm_id, {"migrate": {"host": b.name}})
    settled(lab, vm_id, "VERIFY_RESIZE", b.name)
    assert boots_written(lab, vm_id, 3) == "%s-2" % mark
    lab.action(vm_id, {"confirm_resize": {}})
    settled(lab, vm_id, "ACTIVE", b.name)
    assert domain not in domains(a)
    audit_clean(lab)
    lab.delete("/v1/vms/" + vm_id)
    lab.wait_gone(vm_id, timeout=120)
