"""The in-memory FakeDriver keeps the driver contract: ownership, power and
its events, and every move between hosts (two drivers, two hosts)."""
import contextlib
import threading
import uuid

import pytest
from oslo_config import cfg

from common import config, exception
from nova_compute.virt import driver as virt_driver
from nova_compute.virt import fake, get_driver

A, B = "host-a", "host-b"


def make_conf(tmp_path, name="fake"):
    conf = cfg.ConfigOpts()
    config.register_opts(conf)
    conf([], project="mininova", default_config_files=[])
    conf.set_override("compute_driver", name, group="compute")
    conf.set_override("instances_path", str(tmp_path / "instances"), group="compute")
    return conf


@pytest.fixture
def base_image(tmp_path):
    path = tmp_path / "base.img"
    path.write_bytes(b"\0" * 4096)
    return str(path)


@pytest.fixture
def make_driver(tmp_path):
    """make_driver(host, cls=FakeDriver) -> an initialised driver whose
    lifecycle events are kept in ``driver.events``."""
    def make(host=A, cls=fake.FakeDriver):
        events = []
        drv = cls(make_conf(tmp_path), lifecycle_callback=lambda i, e: events.append((i, e)))
        drv.events = events
        drv.init_host(host)
        return drv
    return make


def spec(**kwargs):
    values = dict(id=str(uuid.uuid4()), name="vm1", vcpus=1, memory_mb=64, root_gb=1,
                  image_id="img-1", project_id="p", mac_address="52:54:00:00:00:2a")
    values.update(kwargs)
    return virt_driver.InstanceSpec(**values)


def power(drv, instance_id):
    return drv.get_info(instance_id)["power_state"]


def test_get_driver_picks_the_in_memory_fake(tmp_path):
    assert type(get_driver(make_conf(tmp_path))) is fake.FakeDriver
    assert get_driver(make_conf(tmp_path, "fake-libvirt")).__class__.__name__ == (
        "FakeLibvirtDriver")


def test_spawn_list_console_addresses_destroy(make_driver, base_image):
    drv = make_driver()
    vm = spec()
    steps = []

    def step(event):
        steps.append(event)
        return contextlib.nullcontext()
    drv.spawn(vm, base_image, step=step)
    assert steps == ["disk cloned", "domain defined", "domain started"]
    assert drv.list_instances() == [{"id": vm.id, "name": "vm1", "power_state": "running"}]
    assert "booted" in drv.get_console_output(vm.id, 5)
    assert drv.get_addresses(["52:54:00:00:00:2A"]) == {"52:54:00:00:00:2a": "198.51.100.44"}
    drv.spawn(vm, base_image)  # idempotent
    drv.destroy(vm.id)
    drv.destroy(vm.id)  # twice: harmless
    assert drv.list_instances() == []
    assert drv.events == [(vm.id, "started"), (vm.id, "stopped"), (vm.id, "undefined")]
    with pytest.raises(exception.InstanceNotFound):
        drv.get_info(vm.id)


def test_another_hosts_domain_is_never_touched(make_driver, base_image):
    drv = make_driver()
    vm = spec()
    drv.define_foreign(vm.id, B)
    assert drv.list_instances() == []
    assert not drv.instance_exists(vm.id)
    with pytest.raises(exception.BuildFailed):
        drv.spawn(vm, base_image)
    with pytest.raises(exception.HypervisorError):
        drv.destroy(vm.id)
    with pytest.raises(exception.InstanceNotFound):
        drv.power_off(vm.id)


def test_a_failed_spawn_leaves_nothing(make_driver, base_image, tmp_path):
    drv = make_driver(cls=fake.FailingSpawnDriver)
    vm = spec()
    with pytest.raises(exception.BuildFailed, match="injected failure"):
        drv.spawn(vm, base_image)
    assert drv.list_instances() == []
    with pytest.raises(exception.BuildFailed, match="no base file"):
        make_driver().spawn(vm, str(tmp_path / "missing"))


def test_power_operations_and_their_events(make_driver, base_image):
    drv = make_driver()
    vm = spec()
    drv.spawn(vm, base_image)
    for operation, expected in ((drv.pause, "paused"), (drv.unpause, "running"),
                                (drv.suspend, "suspended"), (drv.resume, "running"),
                                (drv.power_off, "shutdown"), (drv.power_on, "running")):
        operation(vm.id)
        assert power(drv, vm.id) == expected
    drv.reboot(vm.id, hard=True)
    assert power(drv, vm.id) == "running"
    assert [e for _, e in drv.events] == [
        "started", "suspended", "resumed", "stopped", "started", "stopped", "started",
        "stopped", "started"]


def test_a_change_behind_mininovas_back_is_an_event(make_driver, base_image):
    drv = make_driver()
    vm = spec()
    drv.spawn(vm, base_image)
    drv.external_power_change(vm.id, "crashed")
    assert power(drv, vm.id) == "crashed" and drv.events[-1] == (vm.id, "crashed")


class DeafGuestDriver(fake.FakeDriver):
    guest_ignores_acpi = True


def test_a_cancel_cuts_a_clean_shutdown_short(make_driver, base_image):
    drv = make_driver(cls=DeafGuestDriver)
    vm = spec()
    drv.spawn(vm, base_image)
    cancel = threading.Event()
    cancel.set()  # a delete came: no waiting the 300 s out
    drv.power_off(vm.id, timeout=300, cancel=cancel)
    assert power(drv, vm.id) == "shutdown"


def test_snapshot_writes_the_target_and_keeps_the_power_state(make_driver, base_image,
                                                                tmp_path):
    drv = make_driver()
    vm = spec()
    drv.spawn(vm, base_image)
    target = tmp_path / "snap.qcow2"
    got = drv.snapshot(vm.id, str(target))
    assert got["path"] == str(target) and got["size"] == target.stat().st_size > 0
    assert target.read_bytes()[:4] == b"QFI\xfb"  # what the image store takes
    assert got["virtual_size"] == 1024 ** 3 and power(drv, vm.id) == "running"
    info = drv.get_instance_disk_info(vm.id)
    assert (info["format"], info["virtual_size"], info["image_id"]) == (
        "qcow2", 1024 ** 3, "img-1")


def test_rebuild_from_another_image_and_on_an_evacuation_target(make_driver, base_image):
    drv = make_driver()
    vm = spec()
    drv.spawn(vm, base_image)
    drv.rebuild(spec(id=vm.id, image_id="img-2"), base_image)
    assert drv.get_instance_disk_info(vm.id)["image_id"] == "img-2"
    assert power(drv, vm.id) == "running"
    elsewhere = make_driver(B)  # no domain there yet: a rebuild is a spawn
    elsewhere.rebuild(vm, base_image)
    assert power(elsewhere, vm.id) == "running"


def test_resize_to_another_host_then_confirm(make_driver, base_image):
    src, dst = make_driver(A), make_driver(B)
    vm = spec()
    src.spawn(vm, base_image)
    disk_info = src.migrate_disk_and_power_off(vm.id, B)
    assert power(src, vm.id) == "shutdown"  # still defined, owned here, for a revert
    assert src.migrate_disk_and_power_off(vm.id, B) == disk_info  # idempotent
    bigger = spec(id=vm.id, vcpus=2, memory_mb=128, root_gb=2)
    dst.finish_migration(bigger, disk_info, base_image)
    assert power(dst, vm.id) == "running"
    assert dst.get_info(vm.id)["vcpus"] == 2
    assert dst.get_instance_disk_info(vm.id)["virtual_size"] == 2 * 1024 ** 3
    src.confirm_migration(vm.id)
    assert src.list_instances() == []
    src.confirm_migration(vm.id)  # idempotent
    assert [d["id"] for d in dst.list_instances()] == [vm.id]


def test_resize_reverted(make_driver, base_image):
    src, dst = make_driver(A), make_driver(B)
    vm = spec()
    src.spawn(vm, base_image)
    disk_info = src.migrate_disk_and_power_off(vm.id, B)
    dst.finish_migration(spec(id=vm.id, vcpus=2), disk_info, base_image)
    dst.destroy(vm.id)
    src.finish_revert_migration(vm)
    src.finish_revert_migration(vm)  # idempotent
    assert power(src, vm.id) == "running" and src.get_info(vm.id)["vcpus"] == 1
    assert dst.list_instances() == []
    with pytest.raises(exception.MigrationError):
        make_driver(A).finish_revert_migration(vm)  # nothing set aside on a fresh host


def test_resize_on_the_same_host_confirmed_and_reverted(make_driver, base_image):
    drv = make_driver()
    vm = spec()
    drv.spawn(vm, base_image)
    drv.finish_migration(spec(id=vm.id, vcpus=2),
                         drv.migrate_disk_and_power_off(vm.id, A), base_image)
    drv.confirm_migration(vm.id)  # the VM lives on here
    assert drv.get_info(vm.id)["vcpus"] == 2 and power(drv, vm.id) == "running"

    drv.finish_migration(spec(id=vm.id, vcpus=4),
                         drv.migrate_disk_and_power_off(vm.id, A), base_image)
    drv.finish_revert_migration(spec(id=vm.id, vcpus=2))
    assert drv.get_info(vm.id)["vcpus"] == 2 and power(drv, vm.id) == "running"


def test_a_disk_never_shrinks(make_driver, base_image):
    src, dst = make_driver(A), make_driver(B)
    vm = spec(root_gb=2)
    src.spawn(vm, base_image)
    disk_info = src.migrate_disk_and_power_off(vm.id, B)
    with pytest.raises(exception.Invalid):
        dst.finish_migration(spec(id=vm.id, root_gb=1), disk_info, base_image)
    assert dst.list_instances() == []


def test_live_migration_with_progress(make_driver, base_image):
    src, dst = make_driver(A), make_driver(B)
    vm = spec()
    src.spawn(vm, base_image)
    migrate_data = dst.pre_live_migration(vm, base_image, {})
    # Arriving: the destination shows a paused domain of its own meanwhile.
    assert dst.list_instances() == [{"id": vm.id, "name": "vm1", "power_state": "paused"}]
    seen = []
    src.live_migration(vm.id, B, migrate_data, progress=seen.append)
    assert [p["remaining_bytes"] for p in seen][-1] == 0 and len(seen) == 5
    assert seen[0]["total_bytes"] == 64 * 1024 ** 2
    assert src.list_instances() == []
    dst.post_live_migration_at_destination(vm.id)
    assert power(dst, vm.id) == "running"


class AbortedMidwayDriver(fake.FakeDriver):
    """An operator aborts after the second progress report."""

    def _copying(self, instance_id, n):
        if n == 1:
            self.abort.set()


def test_an_aborted_live_migration_leaves_the_guest_running_at_the_source(make_driver,
                                                                          base_image):
    src, dst = make_driver(A, AbortedMidwayDriver), make_driver(B)
    src.abort = threading.Event()
    vm = spec()
    src.spawn(vm, base_image)
    migrate_data = dst.pre_live_migration(vm, base_image, {})
    with pytest.raises(exception.MigrationAborted):
        src.live_migration(vm.id, B, migrate_data, abort=src.abort)
    assert power(src, vm.id) == "running"
    dst.rollback_live_migration_at_destination(vm.id)
    assert dst.list_instances() == []


def test_a_stopped_guest_does_not_move_live(make_driver, base_image):
    src = make_driver(A)
    vm = spec()
    src.spawn(vm, base_image)
    src.power_off(vm.id)
    with pytest.raises(exception.MigrationError):
        src.live_migration(vm.id, B, {})
    assert power(src, vm.id) == "shutdown"
