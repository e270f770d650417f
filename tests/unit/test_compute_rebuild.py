"""A VM's rebuild on its compute host (libvirt's test driver, the real
conductor over SQLite): a power task from ``rebuilding`` to the VM's
previous power, from a fresh overlay of the new image, keeping its id, MAC
and fixed IP; skipped unless the VM is this host's and rebuilding."""
import hashlib

import pytest

from common import exception, payloads, states
from common.db import api as db_api
from nova_compute.virt import fake_libvirt
from tests.unit.test_compute_manager import CTXT, base_image, make_manager, placed_vm, row  # noqa: F401,E501


@pytest.fixture
def manager(conf, db):
    m = make_manager(conf, db)
    yield m
    for inst in m.driver.list_instances():
        m.driver.destroy(inst["id"])
    m.driver.cleanup_host()


@pytest.fixture
def built(manager, db, conf, base_image):  # noqa: F811
    """An ACTIVE VM built from one image, and a second image to rebuild it from."""
    instance, image = placed_vm(db, conf, *base_image)
    manager.sources[image["id"]] = base_image[0]
    manager.build_instance(CTXT, instance, image)
    other = base_image[0] + ".other"
    with open(other, "wb") as f:
        f.write(b"QFI\xfb" + b"\1" * 4092)
    with open(other, "rb") as f:
        checksum = hashlib.sha256(f.read()).hexdigest()
    with db.transaction() as s:
        new = db_api.image_create(s, name="img-new", size=4096, checksum=checksum, min_ram=0,
                                  min_disk=0, location=other, disk_format="qcow2",
                                  status="active")
        new_image = payloads.image(new)
    manager.sources[new_image["id"]] = other
    return instance["id"], new_image


def start_rebuild(db, instance_id, image_id):
    """What the API does: the guarded move to ``rebuilding`` with the new image."""
    with db.transaction() as s:
        assert db_api.instance_update_if(s, instance_id, {"task_state": states.REBUILDING,
                                                          "image_id": image_id},
                                         expected_task_state=None)


def test_rebuild_of_an_active_vm(manager, db, built):
    instance_id, image = built
    before = row(db, instance_id)
    start_rebuild(db, instance_id, image["id"])
    manager.rebuild_instance(CTXT, instance_id, image)
    after = row(db, instance_id)
    assert (after.vm_state, after.task_state, after.power_state) == ("active", None,
                                                                     "running")
    assert (after.ip_address, after.mac_address) == (before.ip_address, before.mac_address)
    assert manager.driver.get_info(instance_id)["power_state"] == states.RUNNING
    dom, _ = manager.driver._lookup(instance_id)
    assert manager.driver._metadata(dom).image_id == image["id"]


def test_a_stopped_vm_is_rebuilt_stopped(manager, db, built):
    instance_id, image = built
    with db.transaction() as s:
        db_api.instance_update_if(s, instance_id, {"task_state": states.POWERING_OFF})
    manager.stop_instance(CTXT, instance_id)
    assert row(db, instance_id).vm_state == states.STOPPED
    start_rebuild(db, instance_id, image["id"])
    manager.rebuild_instance(CTXT, instance_id, image)
    after = row(db, instance_id)
    assert (after.vm_state, after.task_state, after.power_state) == ("stopped", None,
                                                                     "shutdown")


def test_rebuild_not_asked_for_does_nothing(manager, db, built):
    instance_id, image = built
    manager.rebuild_instance(CTXT, instance_id, image)  # not rebuilding: skipped
    after = row(db, instance_id)
    assert (after.vm_state, after.task_state) == ("active", None)


def test_a_missing_image_fails_the_rebuild_and_ends_the_task(manager, db, built):
    instance_id, image = built
    start_rebuild(db, instance_id, image["id"])
    manager.sources.pop(image["id"])
    manager.rebuild_instance(CTXT, instance_id, dict(image, id="no-such-image"))
    after = row(db, instance_id)
    assert after.task_state is None and after.fault


class DomainLosingRebuildDriver(fake_libvirt.FakeLibvirtDriver):
    """A rebuild that fails after the old domain is gone."""

    def rebuild(self, instance, base_image_path, step=None):
        self.destroy(instance.id)
        raise exception.HypervisorError(reason="no room for the new overlay")


def test_a_rebuild_that_lost_the_domain_leaves_the_vm_in_error(conf, db, base_image):  # noqa: F811,E501
    manager = make_manager(conf, db, driver_cls=DomainLosingRebuildDriver)
    try:
        instance, image = placed_vm(db, conf, *base_image)
        manager.sources[image["id"]] = base_image[0]
        manager.build_instance(CTXT, instance, image)
        start_rebuild(db, instance["id"], image["id"])
        manager.rebuild_instance(CTXT, instance["id"], image)
        after = row(db, instance["id"])
        assert (after.vm_state, after.task_state) == (states.ERROR, None)
        assert "no room" in after.fault
    finally:
        manager.driver.cleanup_host()
