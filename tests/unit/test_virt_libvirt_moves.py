"""The libvirt driver's moves on libvirt's test driver (FakeLibvirtDriver):
two private test hosts, each with an instances_path of its own on one
filesystem. Disks are placeholders (no qemu-img); domains, metadata, files
and their set-aside copies are real."""
import os
import threading
import uuid

import libvirt
import pytest

from common import exception
from nova_compute.virt import driver as virt_driver
from nova_compute.virt import fake_libvirt
from nova_compute.virt.libvirt import config as vconfig
from nova_compute.virt.libvirt import live_migration
from tests.unit.test_virt_fake_libvirt import make_conf

A, B = "compute-a", "compute-b"
NODE = ("<node><cpu><mhz>2000</mhz><nodes>1</nodes><sockets>1</sockets><cores>2</cores>"
        "<threads>1</threads></cpu><memory>2097152</memory></node>")


@pytest.fixture
def base_image(tmp_path):
    path = tmp_path / "base.img"
    path.write_bytes(b"not really an image")
    return str(path)


@pytest.fixture
def hosts(tmp_path):
    """hosts() -> (driver of A, driver of B): private test hypervisors."""
    made = []

    def make():
        for name in (A, B):
            workdir = tmp_path / name
            workdir.mkdir()
            node = workdir / "node.xml"
            node.write_text(NODE)
            drv = fake_libvirt.FakeLibvirtDriver(make_conf(workdir, uri="test://%s" % node))
            drv.init_host(name)
            made.append(drv)
        return made
    yield make
    for drv in made:
        drv.cleanup_host()


def spec(instance_id=None, **kwargs):
    values = dict(id=instance_id or str(uuid.uuid4()), name="vm1", vcpus=1, memory_mb=64,
                  root_gb=1, image_id="img-1", project_id="p")
    values.update(kwargs)
    return virt_driver.InstanceSpec(**values)


def metadata(drv, instance_id):
    dom = drv._host.get_connection().lookupByUUIDString(instance_id)
    return vconfig.InstanceMetadata.from_domain_xml(dom.XMLDesc(0))


def power(drv, instance_id):
    return drv.get_info(instance_id)["power_state"]


def domain_ids(drv):
    return {d.UUIDString() for d in drv._host.get_connection().listAllDomains(0)}


def test_cold_migration_then_confirm(hosts, base_image):
    a, b = hosts()
    vm = spec()
    a.spawn(vm, base_image)
    disk_info = a.migrate_disk_and_power_off(vm.id, B)
    assert power(a, vm.id) == "shutdown"
    assert disk_info["path"] == a.files.set_aside_dir(vm.id) + "/disk"
    assert not os.path.exists(a.files.dir(vm.id))
    assert a.migrate_disk_and_power_off(vm.id, B) == disk_info  # idempotent

    b.finish_migration(spec(vm.id, vcpus=2, memory_mb=128), disk_info, base_image)
    assert power(b, vm.id) == "running"
    meta = metadata(b, vm.id)
    assert (meta.host, meta.vcpus, meta.memory_mb) == (B, 2, 128)
    assert os.path.isfile(b.files.disk(vm.id))
    b.finish_migration(spec(vm.id, vcpus=2, memory_mb=128), disk_info, base_image)  # again

    a.confirm_migration(vm.id)
    assert domain_ids(a) == set()
    assert not os.path.exists(a.files.set_aside_dir(vm.id))
    assert [d["id"] for d in b.list_instances()] == [vm.id]


def test_cold_migration_reverted(hosts, base_image):
    a, b = hosts()
    vm = spec()
    a.spawn(vm, base_image)
    b.finish_migration(spec(vm.id, vcpus=2), a.migrate_disk_and_power_off(vm.id, B),
                       base_image)
    b.destroy(vm.id)
    a.finish_revert_migration(vm)
    assert power(a, vm.id) == "running" and metadata(a, vm.id).vcpus == 1
    assert os.path.isfile(a.files.disk(vm.id))
    assert not os.path.exists(a.files.set_aside_dir(vm.id))
    assert domain_ids(b) == set() and not os.path.exists(b.files.dir(vm.id))


def test_resize_on_the_same_host(hosts, base_image):
    a, _ = hosts()
    vm = spec()
    a.spawn(vm, base_image)
    a.finish_migration(spec(vm.id, vcpus=2), a.migrate_disk_and_power_off(vm.id, A),
                       base_image)
    assert metadata(a, vm.id).vcpus == 2 and power(a, vm.id) == "running"
    a.finish_revert_migration(vm)
    assert metadata(a, vm.id).vcpus == 1 and power(a, vm.id) == "running"

    a.finish_migration(spec(vm.id, vcpus=2), a.migrate_disk_and_power_off(vm.id, A),
                       base_image)
    a.confirm_migration(vm.id)  # the VM lives on here: only the set-aside copy goes
    assert power(a, vm.id) == "running" and os.path.isfile(a.files.disk(vm.id))
    assert not os.path.exists(a.files.set_aside_dir(vm.id))


def test_a_disk_out_of_reach_fails_the_finish_and_leaves_nothing(hosts, base_image):
    a, b = hosts()
    vm = spec()
    a.spawn(vm, base_image)
    disk_info = dict(a.migrate_disk_and_power_off(vm.id, B), path="/elsewhere/disk")
    with pytest.raises(exception.MigrationError, match="/elsewhere/disk"):
        b.finish_migration(vm, disk_info, base_image)
    assert domain_ids(b) == set() and not os.path.exists(b.files.dir(vm.id))


def test_snapshot_and_disk_info(hosts, base_image, tmp_path):
    a, _ = hosts()
    vm = spec()
    a.spawn(vm, base_image)
    got = a.snapshot(vm.id, str(tmp_path / "snap"))
    assert got["size"] == os.path.getsize(tmp_path / "snap") > 0
    assert power(a, vm.id) == "running"  # saved and restored around the copy
    info = a.get_instance_disk_info(vm.id)
    assert (info["path"], info["image_id"]) == (a.files.disk(vm.id), "img-1")


def test_rebuild_makes_a_fresh_disk(hosts, base_image):
    a, _ = hosts()
    vm = spec()
    a.spawn(vm, base_image)
    with open(a.files.disk(vm.id), "a") as f:
        f.write("written by the guest\n")
    a.rebuild(spec(vm.id, image_id="img-2"), base_image)
    assert power(a, vm.id) == "running" and metadata(a, vm.id).image_id == "img-2"
    with open(a.files.disk(vm.id)) as f:
        assert "written by the guest" not in f.read()


def test_pre_live_migration_prepares_and_rollback_clears(hosts, base_image):
    a, b = hosts()
    vm = spec()
    a.spawn(vm, base_image)
    data = b.pre_live_migration(vm, base_image, {"x": 1})
    assert data["x"] == 1 and data["dest_uri"] == "qemu+tcp://%s/system" % B
    assert data["dest_dir"] == b.files.dir(vm.id) and os.path.isfile(b.files.disk(vm.id))
    with pytest.raises(exception.MigrationError, match="already"):
        b.pre_live_migration(vm, base_image, {})
    with pytest.raises(exception.MigrationError):  # the test driver cannot migrate
        a.live_migration(vm.id, B, data)
    assert power(a, vm.id) == "running"
    b.rollback_live_migration_at_destination(vm.id)
    assert not os.path.exists(b.files.dir(vm.id))


def test_destination_xml_moves_ownership_and_paths():
    meta = vconfig.InstanceMetadata(id="i", name="n", host=A, project_id="p", vcpus=1,
                                    memory_mb=64, root_gb=1, image_id="img", created="c")
    xml = vconfig.GuestConfig(virt_type="qemu", uuid=str(uuid.uuid4()), name="mininova-x",
                              memory_mb=64, vcpus=1, metadata=meta, devices=[
                                  vconfig.DiskConfig("/a/inst/disk"),
                                  vconfig.SerialConsoleConfig("/a/inst/console.log"),
                                  vconfig.DiskConfig("/a/instances-other/disk")]).to_xml()
    moved = live_migration.destination_xml(xml, B, "/a/inst", "/b/inst")
    assert vconfig.InstanceMetadata.from_domain_xml(moved).host == B
    assert '"/b/inst/disk"' in moved and '"/b/inst/console.log"' in moved
    assert '"/a/instances-other/disk"' in moved  # not under the instance directory


class MigratingDomain:
    """A domain whose live migration runs until it is aborted, reporting
    progress meanwhile (libvirt's calls as the job monitor makes them)."""

    def __init__(self, state=libvirt.VIR_DOMAIN_RUNNING):
        self.aborted = threading.Event()
        self.polled = threading.Event()
        self._state = state
        self.flags = None

    def UUIDString(self):
        return "vm"

    def state(self):
        return [self._state, 0]

    def migrateToURI3(self, uri, params, flags):
        self.flags = flags
        self.aborted.wait(30)
        raise libvirt.libvirtError("operation aborted: migration job: canceled by client")

    def jobStats(self, flags):
        self.polled.set()
        return {"type": libvirt.VIR_DOMAIN_JOB_UNBOUNDED, "data_processed": 10,
                "data_remaining": 90, "data_total": 100}

    def abortJob(self):
        self.aborted.set()


def test_a_live_migration_job_reports_progress_and_aborts():
    dom, abort, seen = MigratingDomain(), threading.Event(), []

    def progress(p):
        seen.append(p)
        abort.set()  # the operator saw enough
    with pytest.raises(exception.MigrationAborted):
        live_migration.run(dom, "qemu+tcp://b/system", {}, progress=progress, abort=abort,
                           poll_interval=0.01)
    assert seen[0] == {"processed_bytes": 10, "remaining_bytes": 90, "total_bytes": 100}
    assert dom.aborted.is_set()
    assert dom.flags == live_migration.FLAGS


def test_a_paused_guest_is_migrated_to_stay_paused():
    """VIR_MIGRATE_PAUSED: it never runs on the destination (tempest's
    test_live_block_migration_paused)."""
    dom, abort = MigratingDomain(libvirt.VIR_DOMAIN_PAUSED), threading.Event()
    abort.set()
    with pytest.raises(exception.MigrationAborted):
        live_migration.run(dom, "qemu+tcp://b/system", {}, abort=abort, poll_interval=0.01)
    assert dom.flags == live_migration.FLAGS | libvirt.VIR_MIGRATE_PAUSED
