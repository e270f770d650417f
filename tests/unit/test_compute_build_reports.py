"""A build whose domain is up when something goes wrong: a later step fails,
the conductor is away or answers the report with an error, its answer is
lost, or the VM is deleted meanwhile. Nothing may keep running that the DB
does not show live, and nothing the DB shows live may be destroyed."""
import os

import pytest

from common import exception, states
from common.db import allocations, fixed_ips
from common.db import api as db_api
from nova_compute.virt import fake_libvirt
from nova_compute.virt.libvirt import network as vnetwork
from nova_conductor.manager import ConductorManager
from tests.unit.test_compute_manager import (  # noqa: F401 (fixture)
    CTXT, base_image, make_manager, placed_vm, row)


class UnreadableDriver(fake_libvirt.FakeLibvirtDriver):
    """Spawn succeeds; the build's read of the domain state afterwards fails."""

    def get_info(self, instance_id):
        raise exception.HypervisorError(reason="injected failure reading %s" % instance_id)


class HookedDriver(fake_libvirt.FakeLibvirtDriver):
    """Runs ``after_spawn(instance_id)`` once the domain is up."""
    after_spawn = staticmethod(lambda instance_id: None)

    def spawn(self, spec, base_image_path, step=None):
        super().spawn(spec, base_image_path, step=step)
        self.after_spawn(spec.id)


class AwayConductor(ConductorManager):
    """Unreachable for "spawned" reports while ``away``."""
    away = True

    def instance_spawned(self, *args, **kwargs):
        if self.away:
            raise exception.ServiceUnavailable(reason="conductor away (injected)")
        return super().instance_spawned(*args, **kwargs)


class ErrorConductor(ConductorManager):
    """Answers "spawned" with an error, after recording it if ``recorded``
    (an error after the commit: the report did land)."""
    recorded = False

    def instance_spawned(self, *args, **kwargs):
        if self.recorded:
            super().instance_spawned(*args, **kwargs)
        raise exception.RemoteError(exc_type="OperationalError", value="injected")


class LostAnswerConductor(ConductorManager):
    """Records the first "spawned" report, but its answer is lost."""
    lost = False

    def instance_spawned(self, *args, **kwargs):
        done = super().instance_spawned(*args, **kwargs)
        if not self.lost:
            self.lost = True
            raise exception.MessagingTimeout(method="instance_spawned", topic="conductor",
                                             timeout=30)
        return done


@pytest.fixture
def build(conf, db, base_image):
    """build(driver_cls, conductor_cls) -> (manager, instance, image): a VM
    placed on this host and a manager to build it, cleaned up afterwards."""
    made = []

    def make(driver_cls=fake_libvirt.FakeLibvirtDriver, conductor_cls=ConductorManager, report_deadline=120.0):
        conductor = conductor_cls(db)
        manager = make_manager(conf, db, driver_cls, conductor=conductor, report_delay=0.01,
                               report_deadline=report_deadline)
        manager.reported_to = conductor
        made.append(manager)
        instance, image = placed_vm(db, conf, *base_image)
        manager.sources[image["id"]] = base_image[0]
        return manager, instance, image
    yield make
    for manager in made:
        for inst in manager.driver.list_instances():
            manager.driver.destroy(inst["id"])
        manager.driver.cleanup_host()


def domains(manager):
    return [i["id"] for i in manager.driver.list_instances()]


def assert_rolled_back(manager, db, conf, instance_id, fault):
    inst = row(db, instance_id)
    assert (inst.vm_state, inst.task_state) == (states.ERROR, None)
    assert fault in inst.fault
    assert domains(manager) == []
    assert not os.path.exists(os.path.join(conf.compute.instances_path, instance_id))
    assert_no_fixed_ip(manager, db, instance_id)


def dhcp_entries(manager):
    """{instance id: (mac, ip)} of the DHCP host entries of the test network."""
    net = manager.driver._connection().networkLookupByName(manager.driver.network_name)
    return {name[len(vnetwork.HOST_NAME_PREFIX):]: (mac, ip)
            for mac, ip, name in vnetwork.dhcp_hosts(net.XMLDesc(0))}


def assert_no_fixed_ip(manager, db, instance_id):
    """Nothing of the VM's fixed IP is left: no DHCP entry, no held address."""
    assert instance_id not in dhcp_entries(manager)
    with db.transaction() as s:
        assert instance_id not in fixed_ips.held(s).values()
    with db.transaction() as s:
        assert not allocations.of_consumer(s, instance_id)


def test_a_step_failing_after_spawn_destroys_the_domain(build, db, conf):
    manager, instance, image = build(UnreadableDriver)
    manager.build_instance(CTXT, instance, image)
    assert_rolled_back(manager, db, conf, instance["id"], "injected failure reading")


def test_an_error_answer_to_the_report_rolls_the_build_back(build, db, conf):
    """Without this the domain ran on, the VM in BUILD until the watchdog."""
    manager, instance, image = build(conductor_cls=ErrorConductor)
    manager.build_instance(CTXT, instance, image)
    assert_rolled_back(manager, db, conf, instance["id"],
                       "the conductor refused the build's report: Remote error")


def test_an_error_answer_after_the_report_landed_keeps_the_vm(build, db):
    manager, instance, image = build(conductor_cls=ErrorConductor)
    manager.reported_to.recorded = True
    manager.build_instance(CTXT, instance, image)
    assert row(db, instance["id"]).vm_state == states.ACTIVE
    assert domains(manager) == [instance["id"]]


def test_a_lost_answer_then_a_refused_retry_keeps_the_vm(build, db):
    """The retried report is refused (already ACTIVE): the VM is live here."""
    manager, instance, image = build(conductor_cls=LostAnswerConductor)
    manager.build_instance(CTXT, instance, image)
    assert manager.reported_to.lost
    assert row(db, instance["id"]).vm_state == states.ACTIVE
    assert domains(manager) == [instance["id"]]
    assert row(db, instance["id"]).ip_address == dhcp_entries(manager)[instance["id"]][1]


def test_conductor_away_keeps_the_domain_for_the_redelivered_build(build, db):
    manager, instance, image = build(conductor_cls=AwayConductor, report_deadline=0)
    # Raised to the RPC server, which delivers the build again later.
    with pytest.raises(exception.ServiceUnavailable):
        manager.build_instance(CTXT, instance, image)
    inst = row(db, instance["id"])
    assert (inst.vm_state, inst.task_state) == (states.BUILDING, states.SPAWNING)
    assert domains(manager) == [instance["id"]]

    manager.reported_to.away = False
    manager.build_instance(CTXT, instance, image)  # the redelivery resumes it
    assert row(db, instance["id"]).vm_state == states.ACTIVE
    assert domains(manager) == [instance["id"]]


def test_conductor_away_then_deleted_leaves_nothing(build, db):
    manager, instance, image = build(conductor_cls=AwayConductor, report_deadline=0)
    with pytest.raises(exception.ServiceUnavailable):
        manager.build_instance(CTXT, instance, image)
    with db.transaction() as s:  # the API's delete
        db_api.instance_update_if(s, instance["id"], {"task_state": states.DELETING})
    manager.reported_to.away = False
    manager.build_instance(CTXT, instance, image)  # redelivered: skipped
    assert row(db, instance["id"]).task_state == states.DELETING
    manager.terminate_instance(CTXT, instance["id"])
    assert row(db, instance["id"]) is None
    assert domains(manager) == []


def mark_deleting(db, instance_id):  # the API's delete of a placed VM
    with db.transaction() as s:
        db_api.instance_update_if(s, instance_id, {"task_state": states.DELETING})


def soft_delete(db, instance_id):  # e.g. the watchdog, or a delete finished elsewhere
    with db.transaction() as s:
        db_api.instance_soft_delete(s, instance_id)


@pytest.mark.parametrize("delete", [mark_deleting, soft_delete])
def test_a_vm_deleted_during_spawn_leaves_no_domain(build, db, conf, delete):
    manager, instance, image = build(HookedDriver)
    manager.driver.after_spawn = lambda instance_id: delete(db, instance_id)
    manager.build_instance(CTXT, instance, image)
    # Before the delete's own terminate_instance arrives: the build undid itself.
    assert domains(manager) == []
    assert not os.path.exists(os.path.join(conf.compute.instances_path, instance["id"]))
    assert instance["id"] not in manager.addresses.waiting()
    assert instance["id"] not in dhcp_entries(manager)
    manager.terminate_instance(CTXT, instance["id"])
    assert row(db, instance["id"]) is None
    assert_no_fixed_ip(manager, db, instance["id"])
    with db.transaction() as s:
        assert not allocations.of_consumer(s, instance["id"])
