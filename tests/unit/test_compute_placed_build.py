"""Compute message 1.8: a build the scheduler has just placed carries the
VM's guest fields and skips the compute's instance_get on its first delivery;
on a redelivery it reads the VM first as before. Either way nothing runs that
the DB does not show live here."""
import pytest

from common import payloads, states
from common.db import api as db_api
from common.rpc import server as rpc_server
from nova_conductor.manager import ConductorManager
from tests.unit.test_compute_build_reports import build, domains  # noqa: F401 (fixture)
from tests.unit.test_compute_manager import CTXT, base_image, row  # noqa: F401 (fixture)

GUEST = {"metadata": {"role": "web"}, "key_name": None, "key_data": None, "user_data": None}


class CountingConductor(ConductorManager):
    """Counts instance_get calls and records action_finish calls."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.gets, self.finished = 0, []

    def instance_get(self, ctxt, instance_id):
        self.gets += 1
        return super().instance_get(ctxt, instance_id)

    def action_finish(self, ctxt, instance_id, result, message=None):
        self.finished.append((instance_id, result, message))
        return super().action_finish(ctxt, instance_id, result, message)


def deleting(db, instance_id):
    with db.transaction() as s:
        assert db_api.instance_update_if(s, instance_id, {"task_state": states.DELETING},
                                         expected_task_state=states.SPAWNING)


def test_a_placed_build_on_its_first_delivery_reads_nothing_first(build, db):
    manager, instance, image = build(conductor_cls=CountingConductor)
    with rpc_server.delivery(redelivered=False):
        manager.build_instance(CTXT, dict(instance, **GUEST), image, placed=True)
    conductor = manager.reported_to
    assert conductor.gets == 0
    inst = row(db, instance["id"])
    assert (inst.vm_state, inst.task_state) == (states.ACTIVE, None)
    assert domains(manager) == [instance["id"]]


def test_a_placed_build_published_twice_spawns_once(build, db):
    """A publish retried after a lost confirm: the same build again, also on
    a first delivery; the domain it finds makes it read the VM, now ACTIVE."""
    manager, instance, image = build(conductor_cls=CountingConductor)
    for _ in range(2):
        with rpc_server.delivery(redelivered=False):
            manager.build_instance(CTXT, dict(instance, **GUEST), image, placed=True)
    assert manager.reported_to.gets == 1
    inst = row(db, instance["id"])
    assert (inst.vm_state, inst.task_state) == (states.ACTIVE, None)
    assert domains(manager) == [instance["id"]]


@pytest.mark.parametrize("redelivered", [True, None])
def test_a_placed_build_redelivered_or_called_directly_reads_the_vm_first(build, db,
                                                                           redelivered):
    """Redelivered (or outside a handler: unknown), the VM deleted meanwhile:
    skipped as before, no domain."""
    manager, instance, image = build(conductor_cls=CountingConductor)
    deleting(db, instance["id"])
    if redelivered is None:
        manager.build_instance(CTXT, dict(instance, **GUEST), image, placed=True)
    else:
        with rpc_server.delivery(redelivered=True):
            manager.build_instance(CTXT, dict(instance, **GUEST), image, placed=True)
    assert manager.reported_to.gets == 1
    assert domains(manager) == []
    assert manager.reported_to.finished == [
        (instance["id"], "error", "VM was deleted before it was built")]


def test_a_placed_build_of_a_vm_deleted_meanwhile_destroys_its_domain(build, db):
    """First delivery, the VM being deleted since it was placed: the build
    runs, its report is refused, the domain is destroyed and the create's
    action finished as a skipped build's would be."""
    manager, instance, image = build(conductor_cls=CountingConductor)
    deleting(db, instance["id"])
    with rpc_server.delivery(redelivered=False):
        manager.build_instance(CTXT, dict(instance, **GUEST), image, placed=True)
    assert domains(manager) == []
    assert row(db, instance["id"]).task_state == states.DELETING
    assert manager.reported_to.finished == [
        (instance["id"], "error", "VM was deleted before it was built")]


def test_a_placed_build_of_a_vm_moved_to_error_meanwhile_destroys_its_domain(build, db):
    """The watchdog gave the build up while its cast waited: no domain stays."""
    manager, instance, image = build(conductor_cls=CountingConductor)
    with db.transaction() as s:
        db_api.instance_update_if(s, instance["id"], {"vm_state": states.ERROR,
                                                      "task_state": None},
                                  expected_task_state=states.SPAWNING)
    with rpc_server.delivery(redelivered=False):
        manager.build_instance(CTXT, dict(instance, **GUEST), image, placed=True)
    assert domains(manager) == []
    assert row(db, instance["id"]).vm_state == states.ERROR
    assert manager.reported_to.finished == []


def test_delivery_is_unknown_outside_a_handler():
    assert rpc_server.first_delivery() is False
    with rpc_server.delivery(redelivered=False):
        assert rpc_server.first_delivery() is True
    assert rpc_server.first_delivery() is False


def test_guest_fields_are_the_payloads():
    assert set(GUEST) == set(payloads.GUEST_FIELDS)
