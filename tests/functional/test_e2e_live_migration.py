"""Live migration on the lab: two sim hosts (deploy/lab/sim-host.sh, each its
own libvirtd listening on its own address), a compute agent on each with
``[libvirt] live_migration_inbound_uri`` set to the other hosts' way in, and
a running tiny guest whose console prints a heartbeat (boot id, uptime) every
second. Through the API:

- A -> B (the API) and back (``mininova vm live-migrate --wait``): the
  console on the destination goes on with the same boot and a larger
  uptime, no new boot marker; the migration record completed; nothing of
  the VM left on the source; allocations on the destination only;
- an abort while the copy runs (its speed capped with ``virsh
  migrate-setspeed`` so that there is time; its progress shows on the
  record meanwhile): the VM never stopped on A, no leftover on B, the record
  cancelled;
- B's libvirtd stopped while the copy runs: the same, the record error, and
  once B's libvirtd is back B holds nothing of the VM;
- A's compute killed while libvirtd copies: restarted, it stops the copy
  and reports it failed: the same.

``mininova-manage audit`` finds nothing after each. And openstacksdk's
live_migrate_server at Nova 2.1 (block_migration false is a 400)."""
import json
import os
import signal
import subprocess
import sys

import openstack
import pytest
import sqlalchemy as sa

from mininova_lab import sim_compute
from mininova_lab.raw_migration import BOOTED, ticks
from mininova_lab.stack import ROOT, Stack
from mininova_lab.waiting import wait_for
from tests.functional.test_lab_live_migration import build_image

pytestmark = pytest.mark.real_services("rabbitmq", "postgresql", "libvirt", "http")

BASE_DIR = "/var/lib/mininova-lab-live"
INDEXES = (72, 73)
SDK_PASSWORD = "sdk-live-pw"
SLOW_MIB_S = "4"  # migrate-setspeed: ~128 MiB of RAM then takes ~30 s to copy


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("livemig")
    stack = Stack(workdir, network="")
    try:
        stack.start(compute=False)
        stack.add_image("tiny", build_image())
        stack.manage("user", "create", "sdk-admin", "--project", "admin", "--role", "admin",
                     "--password-stdin", stdin=SDK_PASSWORD + "\n")
        with sim_compute.lab_hosts(stack, ("lva", "lvb"), INDEXES, BASE_DIR,
                                   start_compute) as sims:
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
    """No guest network: the heartbeat is on the console."""
    return sim_compute.start_compute(stack, sim, network="")


def cli(stack, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MININOVA_")}
    env.update(MININOVA_URL=stack.url, MININOVA_TOKEN=stack.http.headers["X-Auth-Token"])
    return subprocess.run([sys.executable, "-S", "-m", "mininova_client.cli", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def migration(stack, uuid):
    with stack.engine.begin() as c:
        return c.execute(sa.text("SELECT * FROM migrations WHERE uuid = :u"),
                         {"u": uuid}).mappings().first()


def allocation_hosts(stack, consumer):
    with stack.engine.begin() as c:
        return sorted(r[0] for r in c.execute(sa.text(
            "SELECT host FROM allocations WHERE consumer_id = :c"), {"c": consumer}))


def domains(sim):
    out = sim.virsh("list", "--all", "--name")
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split())


def instance_dir(stack, sim, vm_id):
    return os.path.join(stack.workdir, sim.name, "instances", vm_id)


def console(stack, vm_id):
    return stack.get("/v1/vms/%s/console?lines=10000" % vm_id).json().get("output", "")


def running_vm_on(stack, host, name):
    """A running tiny guest built on ``host`` (the other hosts disabled
    meanwhile), once its heartbeat shows."""
    others = [s.name for s in stack.sims if s.name != host]
    for other in others:
        stack.set_disabled(other, True)
    try:
        r = stack.post("/v1/vms", {"name": name, "image": "tiny", "flavor": "m1.tiny",
                                   "metadata": {"mininova_tick": "1"}})
        assert r.status_code == 202, r.text
        vm_id = r.json()["vm"]["id"]
        vm = stack.wait_status(vm_id, "ACTIVE", timeout=180)
    finally:
        for other in others:
            stack.set_disabled(other, False)
    assert vm["host"] == host
    wait_for(lambda: len(ticks(console(stack, vm_id))) >= 2, 180, 0.5, what="heartbeat")
    return vm_id


def live_migrate(stack, vm_id, **args):
    r = stack.post("/v1/vms/%s/action" % vm_id, {"live_migrate": args})
    assert r.status_code == 202, r.text
    return r.json()["migration"]


def wait_migration(stack, uuid, statuses, timeout=240):
    return wait_for(lambda: (migration(stack, uuid)["status"] in statuses
                             and migration(stack, uuid)), timeout, 0.3,
                    what="migration %s in %s" % (uuid, statuses))


def copying(stack, uuid):
    """Wait until the copy runs and its progress shows; the record."""
    return wait_for(lambda: (lambda m: m["status"] == "running"
                             and (m["memory_processed"] or 0) > 0 and m)(migration(stack, uuid)),
                    120, 0.2, what="migration %s copying" % uuid)


def test_live_migration_there_and_back(lab):
    a, b = lab.sims
    vm_id = running_vm_on(lab, a.name, "lm1")
    domain = "mininova-" + vm_id
    boot, last_up = ticks(console(lab, vm_id))[-1]
    for source, dest, target in ((a, b, b.name), (b, a, None)):
        if target:  # the API, then the CLI (the scheduler's choice: the only other host)
            uuid = live_migrate(lab, vm_id, host=target)
        else:
            r = cli(lab, "vm", "live-migrate", vm_id, "--wait")
            assert r.returncode == 0, r.stdout + r.stderr
            assert "(live-migrated from %s)" % source.name in r.stdout, r.stdout
            assert "migration running" in r.stderr or "migration completed" in r.stderr
            uuid = lab.get("/v1/vms/%s/migrations" % vm_id).json()["migrations"][0]["id"]
        m = wait_migration(lab, uuid, ("completed", "error", "cancelled"))
        assert m["status"] == "completed", m
        assert (m["source_host"], m["dest_host"], m["migration_type"]) == (
            source.name, dest.name, "live-migration")
        vm = lab.wait_status(vm_id, "ACTIVE", timeout=60)
        assert vm["host"] == dest.name
        assert domain in domains(dest) and domain not in domains(source)
        assert not os.path.exists(instance_dir(lab, source, vm_id))
        assert allocation_hosts(lab, vm_id) == [dest.name]
        assert allocation_hosts(lab, uuid) == []
        wait_for(lambda: len(ticks(console(lab, vm_id))) >= 2, 60, 0.5,
                 what="heartbeat on %s" % dest.name)
        text = console(lab, vm_id)
        here = ticks(text)
        assert {t[0] for t in here} == {boot}, text   # the same boot: it kept running
        assert here[0][1] > last_up
        assert BOOTED not in text
        last_up = here[-1][1]
    events = lab.get("/v1/vms/%s/actions" % vm_id).json()["actions"]
    assert [e["action"] for e in events[:2]] == ["live-migration", "live-migration"]
    assert json.loads(lab.manage("audit", "--json"))["findings"] == []
    lab.delete("/v1/vms/" + vm_id)
    lab.wait_gone(vm_id, timeout=60)


def test_abort_while_copying_keeps_it_running_on_the_source(lab):
    a, b = lab.sims
    vm_id = running_vm_on(lab, a.name, "lm2")
    domain = "mininova-" + vm_id
    assert a.virsh("migrate-setspeed", domain, SLOW_MIB_S).returncode == 0
    boot, _ = ticks(console(lab, vm_id))[-1]
    uuid = live_migrate(lab, vm_id, host=b.name)
    assert lab.vm(vm_id)["status"] == "MIGRATING"
    m = copying(lab, uuid)
    assert 0 < m["memory_processed"] and m["memory_remaining"] > 0
    r = lab.delete("/v1/vms/%s/migrations/%s" % (vm_id, uuid))
    assert r.status_code == 202, r.text
    m = wait_migration(lab, uuid, ("cancelled", "error", "completed"))
    assert m["status"] == "cancelled", m
    vm = lab.wait_status(vm_id, "ACTIVE", timeout=60)
    assert vm["host"] == a.name
    after_abort = ticks(console(lab, vm_id))[-1]
    wait_for(lambda: ticks(console(lab, vm_id))[-1][1] > after_abort[1] + 1, 30, 0.5,
             what="the heartbeat going on on A")
    assert {t[0] for t in ticks(console(lab, vm_id))} == {boot}  # never rebooted
    assert domain in domains(a)
    wait_for(lambda: domain not in domains(b)
             and not os.path.exists(instance_dir(lab, b, vm_id)), 60,
             what="nothing of it left on B")
    assert allocation_hosts(lab, vm_id) == [a.name] and allocation_hosts(lab, uuid) == []
    assert json.loads(lab.manage("audit", "--json"))["findings"] == []
    lab.delete("/v1/vms/" + vm_id)
    lab.wait_gone(vm_id, timeout=60)


def test_destination_libvirtd_stopped_while_copying(lab):
    a, b = lab.sims
    vm_id = running_vm_on(lab, a.name, "lm3")
    domain = "mininova-" + vm_id
    assert a.virsh("migrate-setspeed", domain, SLOW_MIB_S).returncode == 0
    boot, _ = ticks(console(lab, vm_id))[-1]
    uuid = live_migrate(lab, vm_id, host=b.name)
    copying(lab, uuid)
    pid = int(open(os.path.join(b.lab_dir, "pids", "libvirtd.pid")).read())
    os.kill(pid, signal.SIGTERM)
    try:
        m = wait_migration(lab, uuid, ("cancelled", "error", "completed"))
        assert m["status"] == "error", m
        vm = lab.wait_status(vm_id, "ACTIVE", timeout=60)
        assert vm["host"] == a.name
        after = ticks(console(lab, vm_id))[-1]
        wait_for(lambda: ticks(console(lab, vm_id))[-1][1] > after[1] + 1, 30, 0.5,
                 what="the heartbeat going on on A")
        assert {t[0] for t in ticks(console(lab, vm_id))} == {boot}
        assert domain in domains(a)
        assert allocation_hosts(lab, vm_id) == [a.name] and allocation_hosts(lab, uuid) == []
    finally:
        b.up()  # heals the dead libvirtd
    wait_for(lambda: domain not in domains(b)
             and not os.path.exists(instance_dir(lab, b, vm_id)), 150,
             what="nothing of it left on B once its libvirtd is back")
    wait_for(lambda: b.name in lab.computes_up(), 60, what="B's compute reporting")
    assert json.loads(lab.manage("audit", "--json"))["findings"] == []
    lab.delete("/v1/vms/" + vm_id)
    lab.wait_gone(vm_id, timeout=60)


def test_openstacksdk_live_migration_at_2_1(lab):
    """openstacksdk's live_migrate_server (os-migrateLive at 2.1; OSC's
    ``server migrate --live-migration`` cannot send it here: the installed
    OSC passes openstacksdk a keyword it does not take)."""
    a, b = lab.sims
    vm_id = running_vm_on(lab, a.name, "lm4")
    conn = openstack.connect(
        auth_url=lab.url + "/identity/v3", username="sdk-admin", password=SDK_PASSWORD,
        project_name="admin", user_domain_name="Default", project_domain_name="Default",
        region_name="RegionOne", interface="public", floating_ip_source="None")
    try:
        with pytest.raises(openstack.exceptions.BadRequestException, match="shared"):
            conn.compute.live_migrate_server(vm_id, block_migration=False)
        conn.compute.live_migrate_server(vm_id, block_migration=True)
    finally:
        conn.close()
    uuid = lab.get("/v1/vms/%s/migrations" % vm_id).json()["migrations"][0]["id"]
    assert wait_migration(lab, uuid, ("completed", "error", "cancelled"))["status"] == \
        "completed"
    assert lab.wait_status(vm_id, "ACTIVE", timeout=60)["host"] == b.name
    lab.delete("/v1/vms/" + vm_id)
    lab.wait_gone(vm_id, timeout=60)


def test_source_compute_killed_while_copying(lab):
    """The compute of A dies (SIGKILL) while libvirtd copies; restarted, it
    stops the copy libvirtd was still running and reports it failed: the VM
    never stopped on A, nothing left on B."""
    a, b = lab.sims
    vm_id = running_vm_on(lab, a.name, "lm5")
    domain = "mininova-" + vm_id
    assert a.virsh("migrate-setspeed", domain, SLOW_MIB_S).returncode == 0
    boot, _ = ticks(console(lab, vm_id))[-1]
    uuid = live_migrate(lab, vm_id, host=b.name)
    copying(lab, uuid)
    lab.computes[a.name].kill()
    lab.computes[a.name].wait(10)
    lab.computes[a.name] = start_compute(lab, a)
    m = wait_migration(lab, uuid, ("cancelled", "error", "completed"))
    assert m["status"] == "error", m
    vm = lab.wait_status(vm_id, "ACTIVE", timeout=60)
    assert vm["host"] == a.name and domain in domains(a)
    after = ticks(console(lab, vm_id))[-1]
    wait_for(lambda: ticks(console(lab, vm_id))[-1][1] > after[1] + 1, 30, 0.5,
             what="the heartbeat going on on A")
    assert {t[0] for t in ticks(console(lab, vm_id))} == {boot}
    wait_for(lambda: domain not in domains(b)
             and not os.path.exists(instance_dir(lab, b, vm_id)), 60,
             what="nothing of it left on B")
    assert allocation_hosts(lab, vm_id) == [a.name] and allocation_hosts(lab, uuid) == []
    assert json.loads(lab.manage("audit", "--json"))["findings"] == []
    lab.delete("/v1/vms/" + vm_id)
    lab.wait_gone(vm_id, timeout=60)
