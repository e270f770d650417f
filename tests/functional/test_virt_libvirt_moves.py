"""LibvirtDriver's moves against the real libvirtd (qemu:///system), QEMU and
qemu-img: a snapshot of a running and of a paused guest, a resize on the same host
(confirmed and reverted) on real overlays, a live migration's destination
prepared. (A domain UUID is unique per libvirtd: moves between two hosts
run on the test driver in tests/unit/test_virt_libvirt_moves.py.)"""
import json
import os
import shutil
import uuid

import pytest

from common import exception
from nova_compute.virt import driver as virt_driver
from tests.functional.test_virt_libvirt import (  # noqa: F401 (fixtures)
    base_image, make_driver, overlay_info, run, virsh)

pytestmark = pytest.mark.real_services("libvirt")

GiB = 1024 ** 3


def spec(instance_id=None, vcpus=1, root_gb=2):
    return virt_driver.InstanceSpec(id=instance_id or str(uuid.uuid4()), name="mover",
                                    vcpus=vcpus, memory_mb=128, root_gb=root_gb,
                                    image_id="blank", project_id="proj-func")


def vcpus(instance_id):
    out = virsh("vcpucount", "mininova-" + instance_id, "--maximum", "--config")
    assert out.returncode == 0, out.stderr
    return int(out.stdout.strip())


def test_snapshot_of_a_running_guest(make_driver, base_image, tmp_path):
    drv = make_driver()
    vm = spec()
    drv.spawn(vm, base_image)
    target = str(tmp_path / "snap.qcow2")
    got = drv.snapshot(vm.id, target)
    info = json.loads(run("qemu-img", "info", "--output=json", target).stdout)
    assert info["format"] == "qcow2" and "backing-filename" not in info  # standalone
    assert got == {"path": target, "format": "qcow2", "size": os.path.getsize(target),
                   "virtual_size": 2 * GiB}
    assert drv.get_info(vm.id)["power_state"] == "running"  # saved and restored
    assert not os.path.exists(target + ".part")
    disk = drv.get_instance_disk_info(vm.id)
    assert (disk["virtual_size"], disk["image_id"]) == (2 * GiB, "blank")


def test_snapshot_of_a_paused_guest_leaves_it_paused(make_driver, base_image, tmp_path):
    """Saved paused, restored paused (it is never waited on to run)."""
    drv = make_driver()
    vm = spec()
    drv.spawn(vm, base_image)
    drv.pause(vm.id)
    target = str(tmp_path / "snap.qcow2")
    got = drv.snapshot(vm.id, target)
    assert got["size"] == os.path.getsize(target) > 0
    assert drv.get_info(vm.id)["power_state"] == "paused"
    drv.unpause(vm.id)
    assert drv.get_info(vm.id)["power_state"] == "running"


def test_resize_on_the_same_host_confirmed(make_driver, base_image, tmp_path):
    drv = make_driver()
    vm = spec()
    drv.spawn(vm, base_image)
    disk_info = drv.migrate_disk_and_power_off(vm.id, drv.host_name, timeout=0)
    assert drv.get_info(vm.id)["power_state"] == "shutdown"
    # The destination's copy of the base is elsewhere (another host's cache).
    other_base = str(tmp_path / "cache-b" / "blank")
    os.makedirs(os.path.dirname(other_base))
    shutil.copyfile(base_image, other_base)
    drv.finish_migration(spec(vm.id, vcpus=2, root_gb=3), disk_info, other_base)
    assert drv.get_info(vm.id)["power_state"] == "running" and vcpus(vm.id) == 2
    info = overlay_info(drv.files.disk(vm.id))
    assert info["virtual-size"] == 3 * GiB and info["backing-filename"] == other_base
    drv.confirm_migration(vm.id)
    assert drv.get_info(vm.id)["power_state"] == "running"
    assert not os.path.exists(drv.files.set_aside_dir(vm.id))


def test_resize_on_the_same_host_reverted(make_driver, base_image):
    drv = make_driver()
    vm = spec()
    drv.spawn(vm, base_image)
    drv.finish_migration(spec(vm.id, vcpus=2, root_gb=3),
                         drv.migrate_disk_and_power_off(vm.id, drv.host_name), base_image)
    drv.finish_revert_migration(vm)
    assert drv.get_info(vm.id)["power_state"] == "running" and vcpus(vm.id) == 1
    assert overlay_info(drv.files.disk(vm.id))["virtual-size"] == 2 * GiB
    assert not os.path.exists(drv.files.set_aside_dir(vm.id))


def test_a_disk_never_shrinks(make_driver, base_image):
    drv = make_driver()
    vm = spec(root_gb=3)
    drv.spawn(vm, base_image)
    disk_info = drv.migrate_disk_and_power_off(vm.id, drv.host_name)
    with pytest.raises(exception.Invalid):
        drv.finish_migration(spec(vm.id, root_gb=2), disk_info, base_image)
    drv.finish_revert_migration(vm)
    assert drv.get_info(vm.id)["power_state"] == "running"


def test_pre_live_migration_prepares_an_overlay_of_the_same_size(make_driver, base_image):
    drv = make_driver()
    vm = spec()
    data = drv.pre_live_migration(vm, base_image, {})
    info = overlay_info(drv.files.disk(vm.id))
    assert info["virtual-size"] == 2 * GiB and info["backing-filename"] == base_image
    assert data["dest_dir"] == drv.files.dir(vm.id)
    drv.rollback_live_migration_at_destination(vm.id)
    assert not os.path.exists(drv.files.dir(vm.id))
