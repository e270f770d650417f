"""ComputeManager with libvirt's test driver and the real conductor over SQLite."""
import os

import pytest

from common import context, payloads, states
from common.db import allocations
from common.db import api as db_api
from common.db.allocations import Resources
from nova_compute.imagecache import ImageCache, read_file_chunks
from nova_compute.manager import ComputeManager
from nova_compute.virt import fake_libvirt
from nova_compute.virt.libvirt import network as vnetwork
from nova_conductor.manager import ConductorManager

CTXT = context.RequestContext(project_id="p")
RATIOS = (16.0, 1.5, 1.0)


@pytest.fixture
def base_image(tmp_path):
    src = tmp_path / "store" / "img"
    src.parent.mkdir()
    src.write_bytes(b"QFI\xfb" + b"\0" * 4092)
    import hashlib
    return str(src), hashlib.sha256(src.read_bytes()).hexdigest()


def make_manager(conf, db, driver_cls=fake_libvirt.FakeLibvirtDriver, conductor=None, **kwargs):
    """A manager whose image 'downloads' read local files: ``manager.sources``
    maps image id -> path (a missing id reads a path that does not exist).
    ``conductor``: the conductor it reports to (default: the real one on
    ``db``); ``kwargs``: ComputeManager's (report_deadline, report_delay)."""
    conf.set_override("compute_driver", "fake-libvirt", group="compute")
    driver = driver_cls(conf)
    driver.init_host(conf.host)
    sources = {}

    def fetch_local(url):  # url: <image_api_url>/v1/images/<id>/file
        return read_file_chunks(sources.get(url.split("/")[-2], "/no/such/file"))
    manager = ComputeManager(driver, conductor or ConductorManager(db),
                             ImageCache(conf.compute.image_cache_path, fetcher=fetch_local), conf,
                             **kwargs)
    manager.sources = sources
    return manager


def placed_vm(db, conf, image_path, checksum, name="vm1"):
    """A VM row as the scheduler leaves it: claimed on this host, spawning."""
    ConductorManager(db).service_heartbeat(CTXT, conf.host, "mininova-compute",
                                           {"vcpus": 4, "memory_mb": 4096, "local_gb": 50})
    with db.transaction() as s:
        image = db_api.image_create(s, name="img-" + name, size=4096, checksum=checksum,
                                    min_ram=0, min_disk=0, location=image_path,
                                    disk_format="qcow2", status="active")
        inst = db_api.instance_create(s, name=name, project_id="p", image_id=image.id,
                                      flavor_id="1", vcpus=1, memory_mb=128, root_gb=1,
                                      vm_state=states.BUILDING, task_state=states.SPAWNING,
                                      host=conf.host, mac_address="52:54:00:00:00:2a")
        allocations.allocate(s, inst.id, conf.host, Resources(1, 128, 1), RATIOS)
        return payloads.instance(inst), payloads.image(image)


@pytest.fixture
def manager(conf, db):
    m = make_manager(conf, db)
    yield m
    clean_up(m.driver)


def clean_up(driver):
    """Destroy the test's domains and drop every DHCP host entry left in the
    network: test:///default is shared by the process while any connection
    is open, so an entry left here takes an address from a later test."""
    for inst in driver.list_instances():
        driver.destroy(inst["id"])
    if driver.network_name:
        net = driver._connection().networkLookupByName(driver.network_name)
        for _mac, _ip, name in vnetwork.dhcp_hosts(net.XMLDesc(0)):
            driver.unplug_fixed_ip(name[len(vnetwork.HOST_NAME_PREFIX):])
    driver.cleanup_host()


def row(db, instance_id):
    with db.transaction() as s:
        try:
            return db_api.instance_get(s, instance_id)
        except Exception:
            return None


def test_build_then_address_then_delete(manager, db, conf, base_image):
    instance, image = placed_vm(db, conf, *base_image)
    manager.sources[image["id"]] = base_image[0]
    manager.build_instance(CTXT, instance, image)
    inst = row(db, instance["id"])
    assert (inst.vm_state, inst.task_state, inst.power_state) == ("active", None, "running")
    assert [i["id"] for i in manager.driver.list_instances()] == [instance["id"]]

    # Allocated before spawn (tests/unit/test_compute_fixed_ips.py): no lease to wait for.
    assert row(db, instance["id"]).ip_address == "203.0.113.10"
    assert not manager.addresses.waiting()

    manager.build_instance(CTXT, instance, image)  # redelivered: no change
    assert len(manager.driver.list_instances()) == 1

    manager.terminate_instance(CTXT, instance["id"])
    assert row(db, instance["id"]) is None
    assert manager.driver.list_instances() == []
    assert not os.path.exists(os.path.join(conf.compute.instances_path, instance["id"]))
    manager.terminate_instance(CTXT, instance["id"])  # twice: harmless


def test_failed_spawn_rolls_back(conf, db, base_image):
    manager = make_manager(conf, db, fake_libvirt.FailingSpawnDriver)
    try:
        instance, image = placed_vm(db, conf, *base_image)
        manager.sources[image["id"]] = base_image[0]
        manager.build_instance(CTXT, instance, image)
        inst = row(db, instance["id"])
        assert inst.vm_state == states.ERROR and "injected failure" in inst.fault
        assert manager.driver.list_instances() == []
        with db.transaction() as s:
            assert not allocations.of_consumer(s, instance["id"])
    finally:
        manager.driver.cleanup_host()


def test_missing_image_source_rolls_back(manager, db, conf, base_image):
    instance, image = placed_vm(db, conf, *base_image)
    manager.build_instance(CTXT, instance, image)
    inst = row(db, instance["id"])
    assert inst.vm_state == states.ERROR and image["id"] in inst.fault
    assert manager.driver.list_instances() == []


def test_build_of_deleted_vm_does_nothing(manager, db, conf, base_image):
    instance, image = placed_vm(db, conf, *base_image)
    manager.sources[image["id"]] = base_image[0]
    with db.transaction() as s:
        db_api.instance_soft_delete(s, instance["id"])
    manager.build_instance(CTXT, instance, image)
    assert manager.driver.list_instances() == []


class NoFixedNetworkDriver(fake_libvirt.FakeLibvirtDriver):
    """A host whose network cannot be read as a fixed IPs' network: its VMs
    take a DHCP lease, which the AddressWatcher learns."""

    def get_fixed_network(self, mac=None):
        return None


def test_without_fixed_network_the_address_comes_from_the_lease(conf, db, base_image):
    manager = make_manager(conf, db, NoFixedNetworkDriver)
    try:
        instance, image = placed_vm(db, conf, *base_image)
        manager.sources[image["id"]] = base_image[0]
        manager.build_instance(CTXT, instance, image)
        assert row(db, instance["id"]).ip_address is None
        assert manager.addresses.waiting()
        manager.addresses.poll(CTXT)
        assert row(db, instance["id"]).ip_address == "198.51.100.44"
        assert not manager.addresses.waiting()
        manager.terminate_instance(CTXT, instance["id"])
    finally:
        manager.driver.cleanup_host()


def test_init_host_resumes_waiting_for_addresses(conf, db, base_image):
    manager = make_manager(conf, db, NoFixedNetworkDriver)
    try:
        instance, image = placed_vm(db, conf, *base_image)
        manager.sources[image["id"]] = base_image[0]
        manager.build_instance(CTXT, instance, image)
        manager.addresses.forget(instance["id"])  # as after a restart
        manager.init_host(CTXT)
        assert instance["id"] in manager.addresses.waiting()
        manager.terminate_instance(CTXT, instance["id"])
    finally:
        manager.driver.cleanup_host()


def test_heartbeat_reports_capacity(manager, db, conf):
    manager.heartbeat(CTXT)
    with db.transaction() as s:
        (svc, node), = db_api.compute_hosts(s)
    assert svc.host == conf.host and node.vcpus > 0 and node.memory_mb > 0


# -- lifecycle events during a build --------------------------------------------

class EventsDuringBuildDriver(fake_libvirt.FakeLibvirtDriver):
    """Fires ``on_spawned`` when the domain is up (as libvirt's started and
    resumed events would) and ``on_read`` when the build reads its state."""
    on_spawned = on_read = staticmethod(lambda instance_id: None)

    def spawn(self, spec, base_image, step=None):
        super().spawn(spec, base_image, step=step)
        self.on_spawned(spec.id)

    def get_info(self, instance_id):
        info = super().get_info(instance_id)
        self.on_read(instance_id)
        return info


class RecordingConductor:
    def __init__(self, conductor):
        self.conductor, self.calls = conductor, []

    def __getattr__(self, method):
        def call(*args, **kwargs):
            self.calls.append(method)
            return getattr(self.conductor, method)(*args, **kwargs)
        return call


def build_with_events(conf, db, base_image, **hooks):
    conductor = RecordingConductor(ConductorManager(db))
    manager = make_manager(conf, db, EventsDuringBuildDriver, conductor=conductor)
    for name, hook in hooks.items():
        setattr(manager.driver, name, lambda i, hook=hook: hook(manager, i))
    instance, image = placed_vm(db, conf, *base_image)
    manager.sources[image["id"]] = base_image[0]
    manager.build_instance(CTXT, instance, image)
    clean_up(manager.driver)
    return conductor.calls


def test_events_of_the_build_itself_cost_no_message(conf, db, base_image):
    """started + resumed arrive before the build reads the state it reports:
    that report covers them."""
    def started_and_resumed(manager, instance_id):
        manager.sync_power_state(CTXT, instance_id)
        manager.sync_power_state(CTXT, instance_id)
    calls = build_with_events(conf, db, base_image, on_spawned=started_and_resumed)
    assert calls == ["instance_get", "fixed_ip_allocate", "instance_spawned"]


def test_an_event_after_the_builds_read_is_synced_after_its_report(conf, db, base_image):
    fired = []

    def stopped_meanwhile(manager, instance_id):
        if not fired:  # the build's own read: an event may follow it
            fired.append(instance_id)
            manager.sync_power_state(CTXT, instance_id)
    calls = build_with_events(conf, db, base_image, on_read=stopped_meanwhile)
    assert calls == ["instance_get", "fixed_ip_allocate", "instance_spawned",
                     "instance_power_sync"]
