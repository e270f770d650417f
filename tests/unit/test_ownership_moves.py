"""The conductor tells a host about the moves that involve it: a VM's row
carries its move in progress, a host's list includes the VMs arriving at or
leaving it, and so a domain in transit is neither reaped as an orphan nor
reported as vanished."""
import sqlalchemy as sa

from common import states
from common.db import vm_migrations
from common.db.models import Instance
from nova_compute import reconciler
from nova_conductor.manager import ConductorManager
from tests.unit.test_lifecycle import CTXT, base_image, row, running  # noqa: F401

OTHER = "other-host"


def start_move(db, vm, source, dest, status="migrating", type_="live-migration"):
    with db.transaction() as s:
        return vm_migrations.create(s, vm, type_, source, dest, status=status)


def set_host(db, vm, host, task_state=None):
    with db.transaction() as s:
        s.execute(sa.update(Instance).where(Instance.id == vm)
                  .values(host=host, task_state=task_state))


def test_a_row_carries_its_move_in_progress(running, db, conf):
    _, vm = running
    conductor = ConductorManager(db)
    assert conductor.instance_get(CTXT, vm)["migration"] is None
    move = start_move(db, vm, conf.host, OTHER)
    assert conductor.instance_get(CTXT, vm)["migration"] == {
        "uuid": move, "source_host": conf.host, "dest_host": OTHER,
        "type": "live-migration", "status": "migrating"}
    with db.transaction() as s:
        vm_migrations.update_if(s, move, {"status": "completed"})
    assert conductor.instance_get(CTXT, vm)["migration"] is None
    assert conductor.instance_get(CTXT, "no-such-vm") is None


def test_a_hosts_list_includes_vms_arriving_and_leaving(running, db, conf):
    _, vm = running
    conductor = ConductorManager(db)
    set_host(db, vm, OTHER)
    assert conductor.instance_list_for_host(CTXT, conf.host) == []
    start_move(db, vm, OTHER, conf.host)
    listed = conductor.instance_list_for_host(CTXT, conf.host)
    assert [r["id"] for r in listed] == [vm]
    assert listed[0]["migration"]["dest_host"] == conf.host
    assert [r["id"] for r in conductor.instance_list_for_host(CTXT, OTHER)] == [vm]
    assert conductor.instance_list_for_host(CTXT, "third-host") == []


def test_an_arriving_domain_is_not_reaped(running, db, conf):
    """The row still names the source; this host is the destination."""
    manager, vm = running
    conf.set_override("reap_orphans", True, group="compute")
    set_host(db, vm, OTHER, task_state="migrating")
    start_move(db, vm, OTHER, conf.host)
    assert manager.reconcile(CTXT) == []
    assert [d["id"] for d in manager.driver.list_instances()] == [vm]
    with db.transaction() as s:   # the move ended elsewhere: now it is an orphan
        s.execute(sa.update(vm_migrations.models.Migration).values(status="failed"))
    assert manager.reconcile(CTXT) == [reconciler.Step("orphan", vm, "running")]
    assert manager.driver.list_instances() == []


def test_a_leaving_vm_whose_domain_is_gone_has_not_vanished(running, db, conf):
    """The row still names this host, the source; its domain has left."""
    manager, vm = running
    manager.driver.destroy(vm)
    start_move(db, vm, conf.host, OTHER, type_="migration", status="finished")
    assert manager.reconcile(CTXT) == []
    inst = row(db, vm)
    assert (inst.vm_state, inst.host, inst.fault) == (states.ACTIVE, conf.host, None)
