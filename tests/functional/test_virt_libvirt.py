"""LibvirtDriver against the real libvirtd (qemu:///system) and QEMU.

Skipped only when qemu:///system cannot be reached. Each test owns a unique
host name, so domains of other tests or engineers on this libvirtd are never
listed or touched.
"""
import json
import os
import subprocess
import threading
import time
import uuid

import pytest
from oslo_config import cfg

from common import config, exception, states
from nova_compute.virt import driver as virt_driver
from nova_compute.virt.libvirt import host as vhost
from nova_compute.virt.libvirt.driver import LibvirtDriver
from tests import prerequisites

pytestmark = pytest.mark.real_services("libvirt")

URI = "qemu:///system"
GiB = 1024 ** 3


class FailAfterStartDriver(LibvirtDriver):
    """QEMU really starts, then the spawn 'fails': clean-up must kill it."""

    def _launch_domain(self, dom):
        super()._launch_domain(dom)
        raise RuntimeError("injected failure after QEMU started")


class RecordingDriver(LibvirtDriver):
    """Notes the connection each domain was started on."""

    def __init__(self, conf, **kwargs):
        super().__init__(conf, **kwargs)
        self.launched_on = []

    def _launch_domain(self, dom):
        self.launched_on.append(dom.connect())
        super()._launch_domain(dom)


def run(*cmd):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def virsh(*args):
    return run("virsh", "-c", URI, *args)


def overlay_info(path):
    out = run("qemu-img", "info", "-U", "--output=json", path)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture
def make_driver(tmp_path):
    drivers = []

    def make(cls=LibvirtDriver, spawn_timeout=60):
        conf = cfg.ConfigOpts()
        config.register_opts(conf)
        conf([], project="mininova", default_config_files=[])
        conf.set_override("instances_path", str(tmp_path / "instances"), group="compute")
        conf.set_override("spawn_timeout", spawn_timeout, group="compute")
        conf.set_override("connection_uri", URI, group="libvirt")
        drv = cls(conf)
        try:
            drv.init_host("functest-" + uuid.uuid4().hex[:12])
        except exception.HypervisorError as exc:
            prerequisites.require(False, "libvirtd at %s is not reachable: %s" % (URI, exc.message))
        drivers.append(drv)
        return drv

    yield make
    for drv in drivers:
        for inst in drv.list_instances():
            drv.destroy(inst["id"])
        drv.cleanup_host()


@pytest.fixture
def base_image(tmp_path):
    path = str(tmp_path / "blank.qcow2")
    out = run("qemu-img", "create", "-q", "-f", "qcow2", path, "1G")
    assert out.returncode == 0, out.stderr
    return path


def spec(root_gb=2):
    return virt_driver.InstanceSpec(id=str(uuid.uuid4()), name="func <vm> & co", vcpus=1,
                                    memory_mb=128, root_gb=root_gb, image_id="blank",
                                    project_id="proj-func")


def test_spawn_runs_qemu_on_overlay_and_destroy_removes_it(make_driver, base_image):
    drv = make_driver()
    inst = spec(root_gb=2)
    started = time.monotonic()
    drv.spawn(inst, base_image)
    elapsed = time.monotonic() - started
    print("\nspawn (overlay + define + start -> RUNNING) took %.3f s" % elapsed)

    name = "mininova-" + inst.id
    assert virsh("domstate", name).stdout.strip() == "running"
    disk = os.path.join(drv.instances_path, inst.id, "disk")
    info = overlay_info(disk)
    assert info["format"] == "qcow2"
    assert info["backing-filename"] == base_image and os.path.isabs(info["backing-filename"])
    assert info["backing-filename-format"] == "qcow2"
    assert info["virtual-size"] == 2 * GiB       # flavor larger than the 1 GiB base
    # The guest's disk is for its owner only (QEMU runs as root).
    assert os.stat(os.path.dirname(disk)).st_mode & 0o077 == 0
    xml = virsh("dumpxml", name).stdout
    assert "<domain type='%s'" % drv.virt_type in xml
    if not vhost.cpu_flags() & {"vmx", "svm"}:
        assert drv.virt_type == "qemu"            # never kvm without vmx/svm
    assert drv.list_instances() == [{"id": inst.id, "name": "func <vm> & co",
                                     "power_state": states.RUNNING}]

    drv.spawn(inst, base_image)                   # idempotent: still the same QEMU
    assert virsh("domstate", name).stdout.strip() == "running"

    drv.destroy(inst.id)
    assert virsh("domstate", name).returncode != 0
    assert not os.path.exists(os.path.dirname(disk))
    drv.destroy(inst.id)                          # idempotent


def test_overlay_keeps_base_size_when_flavor_is_smaller(make_driver, base_image):
    drv = make_driver()
    inst = spec(root_gb=0)
    drv.spawn(inst, base_image)
    info = overlay_info(os.path.join(drv.instances_path, inst.id, "disk"))
    assert info["virtual-size"] == 1 * GiB


def test_failure_after_qemu_started_leaves_nothing(make_driver, base_image):
    drv = make_driver(FailAfterStartDriver)
    inst = spec()
    with pytest.raises(exception.BuildFailed, match="injected failure"):
        drv.spawn(inst, base_image)
    assert virsh("domstate", "mininova-" + inst.id).returncode != 0
    assert not os.path.exists(os.path.join(drv.instances_path, inst.id))


def test_base_that_is_not_qcow2_fails_cleanly(make_driver, tmp_path):
    drv = make_driver()
    raw = tmp_path / "raw.img"
    raw.write_bytes(b"\0" * 1024 * 1024)
    inst = spec()
    with pytest.raises(exception.BuildFailed, match="qemu-img info failed"):
        drv.spawn(inst, str(raw))
    assert virsh("domstate", "mininova-" + inst.id).returncode != 0
    assert not os.path.exists(os.path.join(drv.instances_path, inst.id))


def test_concurrent_spawns_each_on_a_lent_connection(make_driver, base_image):
    """Builds side by side do not queue behind each other's create on one
    connection (libvirtd: 5 calls per connection at a time); qemu-img is asked
    the base's size once."""
    drv = make_driver(RecordingDriver)
    specs = [spec() for _ in range(4)]
    errors = []

    def build(inst):
        try:
            drv.spawn(inst, base_image)
        except Exception as exc:  # reported below
            errors.append(exc)
    threads = [threading.Thread(target=build, args=(inst,)) for inst in specs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == [] and not any(t.is_alive() for t in threads)
    for inst in specs:
        assert virsh("domstate", "mininova-" + inst.id).stdout.strip() == "running"
    main = drv._host.get_connection()
    assert len(drv.launched_on) == 4 and all(c is not main for c in drv.launched_on)
    assert len(drv._base_sizes) == 1
    for inst in specs:
        drv.destroy(inst.id)
    assert drv.list_instances() == []
