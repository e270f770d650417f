"""The libvirt driver's logic on libvirt's test driver (FakeLibvirtDriver): no QEMU.

Tests reach libvirt only through the driver's own connection (no libvirt
import outside nova_compute.virt) and check domains through their XML.
"""
import os
import queue
import threading
import uuid

import pytest
from oslo_config import cfg

from common import config, exception, states
from nova_compute.virt import driver as virt_driver
from nova_compute.virt import fake_libvirt, get_driver
from nova_compute.virt.libvirt import config as vconfig
from nova_compute.virt.libvirt import host as vhost

HOST = "compute-a"
OTHER_HOST = "compute-b"
EVIL_NAME = "a<b&\"c'"


def make_conf(tmp_path, spawn_timeout=10, uri="test:///default"):
    conf = cfg.ConfigOpts()
    config.register_opts(conf)
    conf([], project="mininova", default_config_files=[])
    conf.set_override("compute_driver", "fake-libvirt", group="compute")
    conf.set_override("instances_path", str(tmp_path / "instances"), group="compute")
    conf.set_override("spawn_timeout", spawn_timeout, group="compute")
    conf.set_override("connection_uri", uri, group="libvirt")
    return conf


@pytest.fixture
def base_image(tmp_path):
    path = tmp_path / "base.img"
    path.write_bytes(b"not really an image")
    return str(path)


@pytest.fixture
def make_driver(tmp_path):
    """make_driver(cls=FakeLibvirtDriver, host=HOST, **conf) -> an initialised driver."""
    drivers = []

    def make(cls=fake_libvirt.FakeLibvirtDriver, host=HOST, **conf_kwargs):
        drv = cls(make_conf(tmp_path, **conf_kwargs))
        drv.init_host(host)
        drivers.append(drv)
        return drv

    yield make
    for drv in drivers:
        if isinstance(drv, fake_libvirt.HangingStartDriver):
            drv.release.set()
        for inst in drv.list_instances():
            drv.destroy(inst["id"])
        drv.cleanup_host()


def spec(name="vm1", **kwargs):
    values = dict(id=str(uuid.uuid4()), name=name, vcpus=1, memory_mb=64, root_gb=1,
                  image_id="img-1", project_id="proj-1")
    values.update(kwargs)
    return virt_driver.InstanceSpec(**values)


def domain_xml(drv, instance_id):
    return drv._host.get_connection().lookupByUUIDString(instance_id).XMLDesc(0)


def domain_uuids(drv):
    return {d.UUIDString() for d in drv._host.get_connection().listAllDomains(0)}


def instance_dir(drv, instance_id):
    return os.path.join(drv.instances_path, instance_id)


def assert_nothing_left(drv, instance_id):
    assert instance_id not in domain_uuids(drv)
    assert not os.path.exists(instance_dir(drv, instance_id))


def test_get_driver_picks_fake_libvirt(tmp_path):
    drv = get_driver(make_conf(tmp_path))
    assert type(drv) is fake_libvirt.FakeLibvirtDriver
    assert drv.uri == "test:///default"


def test_spawn_runs_domain_with_metadata(make_driver, base_image):
    drv = make_driver()
    inst = spec()
    drv.spawn(inst, base_image)

    assert drv.get_info(inst.id)["power_state"] == states.RUNNING
    meta = vconfig.InstanceMetadata.from_domain_xml(domain_xml(drv, inst.id))
    assert (meta.id, meta.name, meta.host, meta.project_id, meta.image_id) == (
        inst.id, "vm1", HOST, "proj-1", "img-1")
    assert (meta.vcpus, meta.memory_mb, meta.root_gb) == (1, 64, 1)
    assert meta.created.endswith("+00:00")
    dom = drv._host.get_connection().lookupByUUIDString(inst.id)
    assert dom.name() == "mininova-" + inst.id
    assert os.path.isfile(os.path.join(instance_dir(drv, inst.id), "disk"))
    assert drv.list_instances() == [{"id": inst.id, "name": "vm1", "power_state": "running"}]


def test_list_instances_shows_only_own_domains(make_driver, base_image):
    drv_a = make_driver(host=HOST)
    drv_b = make_driver(host=OTHER_HOST)  # same test:///default host, other owner
    mine, theirs = spec("mine"), spec("theirs")
    drv_a.spawn(mine, base_image)
    drv_b.spawn(theirs, base_image)

    assert [i["id"] for i in drv_a.list_instances()] == [mine.id]
    assert [i["id"] for i in drv_b.list_instances()] == [theirs.id]
    # the test driver's own "test" domain has no metadata: nobody's
    assert "test" not in {i["name"] for i in drv_a.list_instances()}

    # not touched by host A in any way
    with pytest.raises(exception.InstanceNotFound):
        drv_a.get_info(theirs.id)
    with pytest.raises(exception.HypervisorError, match="belongs to compute-b"):
        drv_a.destroy(theirs.id)
    with pytest.raises(exception.BuildFailed, match="belongs to compute-b"):
        drv_a.spawn(theirs, base_image)
    assert drv_b.get_info(theirs.id)["power_state"] == states.RUNNING
    assert os.path.exists(instance_dir(drv_b, theirs.id))


def test_domain_without_metadata_is_not_touched(make_driver, base_image):
    drv = make_driver()
    conn = drv._host.get_connection()
    foreign = conn.lookupByName("test")  # defined by the test driver itself
    foreign_id = foreign.UUIDString()
    with pytest.raises(exception.InstanceNotFound):
        drv.get_info(foreign_id)
    with pytest.raises(exception.HypervisorError, match="no mininova host"):
        drv.destroy(foreign_id)
    assert conn.lookupByName("test").isActive()


def test_destroy_removes_everything_and_is_idempotent(make_driver, base_image):
    drv = make_driver()
    inst = spec()
    drv.spawn(inst, base_image)
    drv.destroy(inst.id)
    assert_nothing_left(drv, inst.id)
    drv.destroy(inst.id)                 # again: nothing to do
    drv.destroy(str(uuid.uuid4()))       # never existed
    with pytest.raises(exception.InstanceNotFound):
        drv.get_info(inst.id)
    assert drv.list_instances() == []


def test_destroy_of_defined_but_stopped_domain(make_driver, base_image):
    drv = make_driver()
    inst = spec()
    drv.spawn(inst, base_image)
    drv._host.get_connection().lookupByUUIDString(inst.id).destroy()  # power off only
    assert drv.get_info(inst.id)["power_state"] == states.SHUTDOWN
    drv.destroy(inst.id)
    assert_nothing_left(drv, inst.id)


def test_destroy_rejects_non_uuid(make_driver):
    drv = make_driver()
    with pytest.raises(exception.Invalid):
        drv.destroy("../../etc")
    with pytest.raises(exception.InstanceNotFound):
        drv.get_info("not-a-uuid")


@pytest.mark.parametrize("cls,timeout,reason", [
    (fake_libvirt.FailingSpawnDriver, 10, "injected failure"),
    (fake_libvirt.SlowSpawnDriver, 1, "not running 1 s after start"),
    (fake_libvirt.HangingStartDriver, 1, "did not return within 1 s"),
])
def test_failed_spawn_leaves_nothing(make_driver, base_image, cls, timeout, reason):
    drv = make_driver(cls, spawn_timeout=timeout)
    inst = spec()
    with pytest.raises(exception.BuildFailed, match=reason) as info:
        drv.spawn(inst, base_image)
    assert inst.id in info.value.message
    assert_nothing_left(drv, inst.id)
    assert drv.list_instances() == []


def test_a_start_refused_for_a_moment_is_tried_again(make_driver, base_image):
    drv = make_driver(fake_libvirt.BusyHostStartDriver)
    inst = spec()
    drv.spawn(inst, base_image)
    assert drv.starts == 3
    assert drv.get_info(inst.id)["power_state"] == states.RUNNING


def test_a_start_refused_every_time_fails_and_leaves_nothing(make_driver, base_image):
    drv = make_driver(fake_libvirt.BusyForeverStartDriver)
    inst = spec()
    with pytest.raises(exception.BuildFailed, match="Resource temporarily unavailable"):
        drv.spawn(inst, base_image)
    assert drv.starts == 4
    assert_nothing_left(drv, inst.id)


def test_spawn_of_missing_base_fails_cleanly(make_driver, tmp_path):
    drv = make_driver()
    inst = spec()
    with pytest.raises(exception.BuildFailed, match="no base file"):
        drv.spawn(inst, str(tmp_path / "missing.img"))
    assert_nothing_left(drv, inst.id)


def test_spawn_is_idempotent(make_driver, base_image):
    drv = make_driver()
    inst = spec()
    drv.spawn(inst, base_image)
    xml_before = domain_xml(drv, inst.id)
    drv.spawn(inst, base_image)              # running: no change at all
    assert domain_xml(drv, inst.id) == xml_before

    dom = drv._host.get_connection().lookupByUUIDString(inst.id)
    dom.destroy()                            # defined, not running: started
    drv.spawn(inst, base_image)
    assert drv.get_info(inst.id)["power_state"] == states.RUNNING

    dom.suspend()                            # paused: resumed
    assert drv.get_info(inst.id)["power_state"] == states.PAUSED_POWER
    drv.spawn(inst, base_image)
    assert drv.get_info(inst.id)["power_state"] == states.RUNNING
    assert [i["id"] for i in drv.list_instances()] == [inst.id]


def test_concurrent_spawns_and_destroys_share_one_connection(make_driver, base_image):
    drv = make_driver()
    specs = [spec("vm%d" % i) for i in range(8)]
    errors = []

    def run_all(action):
        def call(inst):
            try:
                action(inst)
            except Exception as exc:  # reported below
                errors.append(exc)
        threads = [threading.Thread(target=call, args=(inst,)) for inst in specs]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert not any(t.is_alive() for t in threads)

    run_all(lambda inst: drv.spawn(inst, base_image))
    assert errors == []
    assert sorted(i["id"] for i in drv.list_instances()) == sorted(i.id for i in specs)
    run_all(lambda inst: drv.destroy(inst.id))
    assert errors == [] and drv.list_instances() == []
    assert os.listdir(drv.instances_path) == []


def test_spawn_replaces_leftover_dir_without_domain(make_driver, base_image):
    drv = make_driver()
    inst = spec()
    os.makedirs(instance_dir(drv, inst.id))
    with open(os.path.join(instance_dir(drv, inst.id), "disk"), "w") as f:
        f.write("half-written overlay of a build that died")
    drv.spawn(inst, base_image)
    with open(os.path.join(instance_dir(drv, inst.id), "disk")) as f:
        assert f.read().startswith("mininova fake overlay of " + base_image)


@pytest.mark.parametrize("name", [EVIL_NAME, "]]></mininova:name><x/>", "tab\tnew\nline"])
def test_vm_name_round_trips_escaped(make_driver, base_image, name):
    drv = make_driver()
    inst = spec(name)
    drv.spawn(inst, base_image)
    assert drv.list_instances()[0]["name"] == name
    xml = domain_xml(drv, inst.id)
    assert vconfig.InstanceMetadata.from_domain_xml(xml).name == name
    assert name not in xml or name == "tab\tnew\nline"  # markup only ever escaped


def test_vm_name_with_control_characters_still_builds(make_driver, base_image):
    drv = make_driver()
    drv.spawn(spec("bell\x07nul\x00"), base_image)
    assert drv.list_instances()[0]["name"] == "bell\ufffdnul\ufffd"


def test_get_host_resources(make_driver):
    res = make_driver().get_host_resources()
    assert res["vcpus"] == 16 and res["memory_mb"] == 3072  # test driver's node
    assert res["local_gb"] > 0
    assert res["hypervisor_type"] == "TEST"
    assert isinstance(res["hypervisor_version"], int)
    assert res["cpu_info"]["sockets"] >= 1


def test_driver_needs_init_host(tmp_path):
    drv = fake_libvirt.FakeLibvirtDriver(make_conf(tmp_path))
    with pytest.raises(exception.HypervisorError, match="init_host"):
        drv.list_instances()


def test_connection_is_reopened_after_it_died(make_driver):
    drv = make_driver()
    drv._host.get_connection().close()  # as if libvirtd went away
    assert drv.list_instances() == []
    assert drv.get_host_resources()["vcpus"] == 16


def test_private_test_host_from_node_xml(make_driver, base_image, tmp_path):
    node = tmp_path / "node.xml"
    node.write_text("<node><cpu><mhz>2000</mhz><nodes>1</nodes><sockets>1</sockets>"
                    "<cores>2</cores><threads>1</threads></cpu><memory>2097152</memory></node>")
    drv = make_driver(uri="test://" + str(node))
    assert drv.get_host_resources()["memory_mb"] == 2048
    assert domain_uuids(drv) == set()    # not the shared default host
    inst = spec()
    drv.spawn(inst, base_image)
    assert domain_uuids(drv) == {inst.id}


def test_lifecycle_events_reach_the_callback(tmp_path, base_image):
    events = queue.Queue()
    drv = fake_libvirt.FakeLibvirtDriver(make_conf(tmp_path),
                          lifecycle_callback=lambda uuid_, event: events.put((uuid_, event)))
    drv.init_host(HOST)
    inst = spec()
    try:
        drv.spawn(inst, base_image)
        drv.destroy(inst.id)
        seen = []
        while ("undefined" not in seen):
            uuid_, event = events.get(timeout=10)
            if uuid_ == inst.id:
                seen.append(event)
        assert seen == ["defined", "started", "stopped", "undefined"]
    finally:
        drv.cleanup_host()


@pytest.mark.parametrize("flags,device,configured,expected", [
    ("fpu vmx sse", True, "auto", "kvm"),
    ("fpu svm sse", True, "auto", "kvm"),
    ("fpu vmx sse", False, "auto", "qemu"),   # no /dev/kvm
    ("fpu sse", True, "auto", "qemu"),        # /dev/kvm alone proves nothing
    ("fpu sse", True, "qemu", "qemu"),
    ("fpu vmx", True, "qemu", "qemu"),
    ("fpu sse", False, "kvm", "kvm"),         # explicit choice wins (with a warning)
])
def test_detect_virt_type(tmp_path, flags, device, configured, expected):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: %s\n\nprocessor\t: 1\nflags\t\t: %s\n"
                       % (flags, flags))
    kvm = tmp_path / "kvm"
    if device:
        kvm.write_text("")
    assert vhost.detect_virt_type(configured, str(cpuinfo), str(kvm)) == expected


def test_instance_spec_validates():
    with pytest.raises(exception.Invalid):
        spec(id="../x")
    with pytest.raises(exception.Invalid):
        spec(id=str(uuid.uuid4()).upper())
    with pytest.raises(exception.Invalid):
        spec(vcpus=0)
    with pytest.raises(exception.Invalid):
        spec(memory_mb="64")
