"""A VM's snapshot on its compute host (libvirt's test driver, the real
conductor over SQLite, an uploader that records): the flattened disk
uploaded, the VM back at rest as it was, the temp file gone; on every
failure (the driver, the upload, a delete overtaking it, a snapshot no
longer asked for) the image is discarded, the temp file gone, and the VM
back at rest with a fault."""
import os

import pytest

from common import exception, states
from common.db import actions
from common.db import api as db_api
from nova_compute import snapshotter
from tests.unit.test_compute_manager import CTXT, base_image, make_manager, placed_vm, row  # noqa: F401,E501

IMAGE = "11111111-2222-3333-4444-555555555555"


class RecordingUploader:
    def __init__(self, fail=None):
        self.fail = fail
        self.uploaded, self.discarded = [], []

    def upload(self, image_id, path):
        with open(path, "rb") as f:
            data = f.read()
        if self.fail:
            raise self.fail
        self.uploaded.append((image_id, data))
        return {"md5": "x", "sha256": "y"}

    def discard(self, image_id):
        self.discarded.append(image_id)
        return True


@pytest.fixture
def uploader():
    return RecordingUploader()


@pytest.fixture
def manager(conf, db, uploader):
    m = make_manager(conf, db, image_uploader=uploader)
    yield m
    for inst in m.driver.list_instances():
        m.driver.destroy(inst["id"])
    m.driver.cleanup_host()


@pytest.fixture
def vm(manager, db, conf, base_image):  # noqa: F811
    instance, image = placed_vm(db, conf, *base_image)
    manager.sources[image["id"]] = base_image[0]
    manager.build_instance(CTXT, instance, image)
    assert row(db, instance["id"]).vm_state == states.ACTIVE
    return instance["id"]


def start_snapshot(db, instance_id):
    """What the API does: the guarded move to ``image_snapshot``."""
    with db.transaction() as s:
        assert db_api.instance_update_if(s, instance_id,
                                         {"task_state": states.IMAGE_SNAPSHOT},
                                         expected_task_state=None)


def leftovers(conf):
    directory = snapshotter.snapshots_dir(conf)
    return os.listdir(directory) if os.path.isdir(directory) else []


def test_snapshot_uploads_the_flattened_disk(manager, db, conf, vm, uploader):
    start_snapshot(db, vm)
    manager.snapshot_instance(CTXT, vm, IMAGE)
    (image_id, data), = uploader.uploaded
    assert image_id == IMAGE and data.startswith(b"mininova fake overlay")  # its "disk"
    assert uploader.discarded == []
    after = row(db, vm)
    assert (after.vm_state, after.task_state, after.power_state, after.fault) == (
        states.ACTIVE, None, states.RUNNING, None)
    assert manager.driver.get_info(vm)["power_state"] == states.RUNNING
    assert leftovers(conf) == []
    assert snapshotter.snapshots_dir(conf) == os.path.join(conf.state_path, "snapshots")


def test_the_steps_are_in_the_timeline(manager, db, vm):
    start_snapshot(db, vm)
    manager.snapshot_instance(CTXT, vm, IMAGE)
    with db.transaction() as s:
        _, events = actions.action_get(s, vm, CTXT.request_id)
        steps = {e.event: e.result for e in events}
    assert {k: steps.get(k) for k in ("image_snapshot", "snapshot disk", "snapshot upload")
            } == dict.fromkeys(("image_snapshot", "snapshot disk", "snapshot upload"),
                               "success")


def test_a_stopped_vm_stays_stopped(manager, db, vm, uploader):
    with db.transaction() as s:
        db_api.instance_update_if(s, vm, {"task_state": states.POWERING_OFF})
    manager.stop_instance(CTXT, vm)
    start_snapshot(db, vm)
    manager.snapshot_instance(CTXT, vm, IMAGE)
    assert len(uploader.uploaded) == 1
    after = row(db, vm)
    assert (after.vm_state, after.task_state) == (states.STOPPED, None)


def test_a_failed_upload_discards_the_image(conf, db, base_image):  # noqa: F811
    uploader = RecordingUploader(fail=exception.ImageUnavailable(image=IMAGE,
                                                                 reason="HTTP 413"))
    manager = make_manager(conf, db, image_uploader=uploader)
    try:
        instance, image = placed_vm(db, conf, *base_image)
        manager.sources[image["id"]] = base_image[0]
        manager.build_instance(CTXT, instance, image)
        start_snapshot(db, instance["id"])
        manager.snapshot_instance(CTXT, instance["id"], IMAGE)
        assert uploader.discarded == [IMAGE]
        after = row(db, instance["id"])
        assert (after.vm_state, after.task_state) == (states.ACTIVE, None)
        assert "HTTP 413" in after.fault
        assert leftovers(conf) == []
    finally:
        for inst in manager.driver.list_instances():
            manager.driver.destroy(inst["id"])
        manager.driver.cleanup_host()


def test_a_failed_driver_snapshot_discards_the_image(manager, db, conf, vm, uploader,
                                                     monkeypatch):
    def broken(instance_id, target_path):
        with open(target_path + ".part", "wb"):
            pass
        os.unlink(target_path + ".part")  # the driver's own post-condition
        raise exception.HypervisorError(reason="qemu-img convert: no space left")
    monkeypatch.setattr(manager.driver, "snapshot", broken)
    start_snapshot(db, vm)
    manager.snapshot_instance(CTXT, vm, IMAGE)
    assert (uploader.uploaded, uploader.discarded) == ([], [IMAGE])
    after = row(db, vm)
    assert (after.vm_state, after.task_state) == (states.ACTIVE, None)
    assert "no space left" in after.fault
    assert leftovers(conf) == []


def test_a_delete_during_the_snapshot_discards_the_image(manager, db, conf, vm, uploader,
                                                         monkeypatch):
    real = manager.driver.snapshot

    def deleted_meanwhile(instance_id, target_path):
        info = real(instance_id, target_path)
        # What the API and the Deleter do: deleting wins, the task's wait is cut.
        with db.transaction() as s:
            db_api.instance_update_if(s, instance_id, {"task_state": states.DELETING})
        manager.deleter.cancels.cancel(instance_id)
        return info
    monkeypatch.setattr(manager.driver, "snapshot", deleted_meanwhile)
    start_snapshot(db, vm)
    manager.snapshot_instance(CTXT, vm, IMAGE)
    assert (uploader.uploaded, uploader.discarded) == ([], [IMAGE])
    assert row(db, vm).task_state == states.DELETING  # the delete's, untouched
    assert leftovers(conf) == []
    manager.terminate_instance(CTXT, vm)
    assert not manager.driver.instance_exists(vm)


@pytest.mark.parametrize("task", [None, states.DELETING, states.POWERING_OFF])
def test_a_snapshot_no_longer_asked_for_is_skipped_and_its_image_discarded(
        manager, db, vm, uploader, task):
    with db.transaction() as s:
        db_api.instance_update_if(s, vm, {"task_state": task})
    manager.snapshot_instance(CTXT, vm, IMAGE)
    assert (uploader.uploaded, uploader.discarded) == ([], [IMAGE])
    assert row(db, vm).task_state == task


def test_a_vm_gone_from_the_hypervisor_fails_the_snapshot(manager, db, conf, vm, uploader):
    start_snapshot(db, vm)
    manager.driver.destroy(vm)
    manager.snapshot_instance(CTXT, vm, IMAGE)
    assert (uploader.uploaded, uploader.discarded) == ([], [IMAGE])
    after = row(db, vm)
    assert after.task_state is None and after.fault
    assert leftovers(conf) == []


def start_backup(db, instance_id):
    with db.transaction() as s:
        assert db_api.instance_update_if(s, instance_id, {"task_state": states.IMAGE_BACKUP},
                                         expected_task_state=None)


def test_a_backup_rotates_out_the_older_ones_after_its_upload(manager, db, vm, uploader):
    start_backup(db, vm)
    manager.backup_instance(CTXT, vm, IMAGE, ["old-1", "old-2"])
    assert [i for i, _ in uploader.uploaded] == [IMAGE]
    assert uploader.discarded == ["old-1", "old-2"]
    after = row(db, vm)
    assert (after.vm_state, after.task_state, after.fault) == (states.ACTIVE, None, None)
    with db.transaction() as s:
        _, events = actions.action_get(s, vm, CTXT.request_id)
        rotation = next(e for e in events if e.event == "backup rotation")
    assert (rotation.result, rotation.details) == ("success", "2 deleted")


def test_a_failed_backup_rotates_nothing_out(conf, db, base_image):  # noqa: F811
    uploader = RecordingUploader(fail=exception.ImageUnavailable(image=IMAGE, reason="full"))
    manager = make_manager(conf, db, image_uploader=uploader)
    try:
        instance, image = placed_vm(db, conf, *base_image)
        manager.sources[image["id"]] = base_image[0]
        manager.build_instance(CTXT, instance, image)
        start_backup(db, instance["id"])
        manager.backup_instance(CTXT, instance["id"], IMAGE, ["old-1"])
        assert uploader.discarded == [IMAGE]  # the new one only
        assert row(db, instance["id"]).fault
    finally:
        for inst in manager.driver.list_instances():
            manager.driver.destroy(inst["id"])
        manager.driver.cleanup_host()


def test_a_backup_is_not_taken_for_a_snapshot_task(manager, db, vm, uploader):
    start_snapshot(db, vm)  # image_snapshot, not image_backup: skipped
    manager.backup_instance(CTXT, vm, IMAGE, ["old-1"])
    assert (uploader.uploaded, uploader.discarded) == ([], [IMAGE])


def test_a_snapshot_interrupted_by_a_restart_leaves_no_queued_image(manager, db, vm):
    """The restarted host no longer knows the image: the conductor deletes
    the VM's queued snapshot images with the failed task (not others')."""
    from common.db import images as db_images

    def image(name, instance_uuid, status):
        with db.transaction() as s:
            return db_images.create(s, {"id": name, "name": name, "status": status},
                                    {"instance_uuid": instance_uuid}, ()).id
    half = image("half", vm, "queued")
    done = image("done", vm, "active")
    other = image("other", "another-vm", "queued")
    start_snapshot(db, vm)
    manager.settle_interrupted(CTXT)
    after = row(db, vm)
    assert after.task_state is None and "restart" in after.fault
    with db.transaction() as s:
        gone = {i: s.get(db_images.Image, i).deleted_at is not None
                for i in (half, done, other)}
    assert gone == {half: True, done: False, other: False}
