"""The conductor tells a host about the moves that involve it: a VM's row
carries its move in progress, a host's list includes the VMs arriving at or
leaving it, and so a domain in transit is neither reaped as an orphan nor
reported as vanished."""
import sqlalchemy as sa

from common import states
from common.db import allocations, vm_migrations
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


# -- the conductor's side: which host may report during a move ----------------

def test_a_domain_leaving_in_a_move_is_not_reported_vanished(running, db, conf):
    """A racing "vanished" from the source (decided before the move showed)
    changes nothing while the move is in progress; after it, it does."""
    _, vm = running
    conductor = ConductorManager(db)
    move = start_move(db, vm, conf.host, OTHER)
    assert not conductor.instance_vanished(CTXT, vm, conf.host)
    assert not conductor.instance_power_sync(CTXT, vm, conf.host, states.SHUTDOWN)
    assert row(db, vm).vm_state == states.ACTIVE
    with db.transaction() as s:
        vm_migrations.update_if(s, move, {"status": "failed"})
    assert conductor.instance_vanished(CTXT, vm, conf.host)
    assert row(db, vm).vm_state == states.ERROR


def test_either_end_of_a_move_may_report_its_results(running, db, conf):
    """The row still names the source; the destination's reports count, a
    third host's do not."""
    _, vm = running
    conductor = ConductorManager(db)
    set_host(db, vm, conf.host, task_state=states.POWERING_OFF)
    start_move(db, vm, conf.host, OTHER)
    assert not conductor.instance_set_address(CTXT, vm, "third-host", "10.0.0.9")
    assert conductor.instance_set_address(CTXT, vm, OTHER, "10.0.0.7")
    assert not conductor.instance_task_done(CTXT, vm, "third-host", states.POWERING_OFF,
                                            states.SHUTDOWN)
    assert conductor.instance_task_done(CTXT, vm, OTHER, states.POWERING_OFF, states.SHUTDOWN)
    inst = row(db, vm)
    assert (inst.vm_state, inst.ip_address, inst.host) == (states.STOPPED, "10.0.0.7",
                                                           conf.host)


def test_a_delete_ended_by_the_destination_frees_both_hosts(running, db, conf):
    _, vm = running
    conductor = ConductorManager(db)
    conductor.service_heartbeat(CTXT, OTHER, "mininova-compute",
                                {"vcpus": 4, "memory_mb": 4096, "local_gb": 100})
    move = start_move(db, vm, conf.host, OTHER)
    with db.transaction() as s:
        assert allocations.move_allocations(s, vm, move) == 1
        assert allocations.allocate(s, vm, OTHER, allocations.Resources(1, 128, 1),
                                    (16.0, 1.5, 1.0))
    set_host(db, vm, conf.host, task_state=states.DELETING)
    assert not conductor.instance_terminated(CTXT, vm, "third-host")
    assert conductor.instance_terminated(CTXT, vm, OTHER)
    assert conductor.instance_get(CTXT, vm) is None
    with db.transaction() as s:
        assert not allocations.of_consumer(s, vm) and not allocations.of_consumer(s, move)
