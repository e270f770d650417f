"""Config drives: their contents, the build payload that fills them, the CD-ROM
the libvirt driver attaches (on libvirt's test driver), and a build through the
compute manager. The ISO image itself, read by cloud-init, is tested in
tests/functional/test_configdrive_cloudinit.py; a guest using it in
tests/functional/test_configdrive_guest.py."""
import base64
import hashlib
import json
import os
import uuid
import xml.etree.ElementTree as ET

import pytest
from oslo_config import cfg

from common import config, context, exception, payloads, states
from common.db import allocations, instance_metadata
from common.db import api as db_api
from common.db.allocations import Resources
from nova_compute import guest_data
from nova_compute.imagecache import ImageCache, read_file_chunks
from nova_compute.manager import ComputeManager
from nova_compute.virt import configdrive, fake_libvirt
from nova_compute.virt import driver as virt_driver
from nova_compute.virt.libvirt import config as vconfig
from nova_conductor.manager import ConductorManager
from tests.unit.test_compute_manager import clean_up
from tests.unit.test_virt_libvirt_moves import B, base_image, hosts  # noqa: F401 (fixtures)

ID = "6f1c1a52-8a55-4a1e-9c35-2f0d3f2a1b7e"
MAC = "52:54:00:12:34:56"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBAhLxAKy0sPEVzKsJ0d7x5r5l8kqF3D3Oq7m8Yw0b6Q a@b"


def spec(drive, mac=MAC, instance_id=ID):
    return virt_driver.InstanceSpec(id=instance_id, name="web 1", vcpus=1, memory_mb=128,
                                    root_gb=1, image_id="img", project_id="proj",
                                    mac_address=mac, config_drive=drive)


def files_json(files, path):
    return json.loads(files[path])


# -- contents ------------------------------------------------------------------

@pytest.mark.parametrize("name, expected", [
    ("web1", "web1"), ("Web Server_01", "web-server-01"), ("a.b..c", "a.b..c"),
    ("--x--", "x"), ("ünïcode & co!", "ncode--co"), ("x" * 80, "x" * 63),
    ("", "server-" + ID), ("!!!", "server-" + ID)])
def test_hostname_is_sanitized_as_nova_does(name, expected):
    assert configdrive.sanitize_hostname(name, ID) == expected


def test_files_carry_meta_data_network_data_user_data_in_every_version():
    drive = configdrive.ConfigDrive(
        hostname="web-1", public_keys=[["k1", KEY], ("k2", "ssh-rsa AAAA b@c")],
        metadata={"b": "2", "a": "1"}, user_data=b"#!/bin/sh\necho hi\n",
        availability_zone="az1", launch_index=3)
    files = configdrive.drive_files(spec(drive))
    per_version = ["meta_data.json", "network_data.json", "user_data", "vendor_data.json",
                   "vendor_data2.json"]
    assert sorted(files) == sorted("openstack/%s/%s" % (v, n)
                                   for v in configdrive.VERSIONS for n in per_version)
    for name in per_version:  # one content for every version, the random seed too
        assert len({files["openstack/%s/%s" % (v, name)] for v in configdrive.VERSIONS}) == 1
    md = files_json(files, "openstack/latest/meta_data.json")
    assert len(base64.b64decode(md.pop("random_seed"))) == 512
    assert md == {
        "uuid": ID, "name": "web 1", "hostname": "web-1", "project_id": "proj",
        "availability_zone": "az1", "launch_index": 3,
        "public_keys": {"k1": KEY, "k2": "ssh-rsa AAAA b@c"},
        "keys": [{"name": "k1", "type": "ssh", "data": KEY},
                 {"name": "k2", "type": "ssh", "data": "ssh-rsa AAAA b@c"}],
        "meta": {"a": "1", "b": "2"}, "devices": []}
    assert files["openstack/latest/user_data"] == b"#!/bin/sh\necho hi\n"
    assert files_json(files, "openstack/latest/vendor_data.json") == {}


def test_network_data_is_dhcp_without_a_fixed_ip_and_static_with_one():
    dhcp = files_json(configdrive.drive_files(spec(configdrive.ConfigDrive(hostname="h"))),
                      "openstack/latest/network_data.json")
    link = {"id": "tap6f1c1a52-8a", "vif_id": ID, "type": "bridge", "mtu": 1500,
            "ethernet_mac_address": MAC}
    assert dhcp == {"links": [link], "services": [], "networks": [
        {"id": "network0", "type": "ipv4_dhcp", "link": "tap6f1c1a52-8a",
         "network_id": "mininova"}]}

    fixed = configdrive.FixedIP("192.168.123.7/24", gateway="192.168.123.1",
                                dns=["192.168.123.1"])
    static = files_json(configdrive.drive_files(
        spec(configdrive.ConfigDrive(hostname="h", fixed_ip=fixed), mac=MAC.upper())),
        "openstack/latest/network_data.json")
    dns = [{"type": "dns", "address": "192.168.123.1"}]
    assert static == {"links": [link], "services": dns, "networks": [
        {"id": "network0", "type": "ipv4", "link": "tap6f1c1a52-8a", "network_id": "mininova",
         "ip_address": "192.168.123.7", "netmask": "255.255.255.0", "services": dns,
         "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0",
                     "gateway": "192.168.123.1"}]}]}


def test_no_nic_no_network_and_no_user_data_file():
    files = configdrive.drive_files(spec(configdrive.ConfigDrive(hostname="h"), mac=None))
    assert files_json(files, "openstack/latest/network_data.json") == {
        "links": [], "networks": [], "services": []}
    assert "openstack/latest/user_data" not in files


@pytest.mark.parametrize("kwargs", [
    {"hostname": "Upper"}, {"hostname": ""}, {"hostname": "a b"}, {"hostname": None},
    {"metadata": {"k": 1}}, {"metadata": "nope"}, {"public_keys": [("name", "")]},
    {"public_keys": ["ssh-rsa AAAA"]}, {"user_data": "text, not bytes"},
    {"user_data": b"x" * (configdrive.MAX_USER_DATA + 1)}, {"launch_index": -1},
    {"launch_index": True}, {"fixed_ip": "10.0.0.5/24"}])
def test_config_drive_refuses_what_it_cannot_write(kwargs):
    with pytest.raises(exception.Invalid):
        configdrive.ConfigDrive(**{"hostname": "h", **kwargs})


@pytest.mark.parametrize("address, gateway, dns", [
    ("10.0.0.0/24", None, ()), ("10.0.0.5/32", None, ()), ("10.0.0.5", None, ()),
    ("10.0.0.5/24", "10.0.0.300", ()), ("10.0.0.5/24", None, ("dns.example",)),
    ("fe80::1/64", None, ()), ("10.0.0.5/33", None, ())])
def test_fixed_ip_must_be_a_host_address_in_an_ipv4_network(address, gateway, dns):
    with pytest.raises(exception.Invalid):
        configdrive.FixedIP(address, gateway=gateway, dns=dns)


def test_instance_spec_takes_only_a_config_drive():
    with pytest.raises(exception.Invalid):
        spec({"hostname": "h"})
    assert spec(None).config_drive is None


def test_make_iso_reports_a_missing_genisoimage_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(configdrive, "GENISOIMAGE", "no-such-genisoimage-here")
    with pytest.raises(exception.HypervisorError, match="no-such-genisoimage-here is not"):
        configdrive.make_iso({"openstack/latest/meta_data.json": b"{}"},
                             str(tmp_path / "disk.config"))
    assert os.listdir(tmp_path) == []


def test_make_iso_refuses_paths_outside_the_drive(tmp_path):
    with pytest.raises(exception.Invalid):
        configdrive.make_iso({"../escape": b"x"}, str(tmp_path / "disk.config"))
    assert os.listdir(tmp_path) == []


# -- the build payload ------------------------------------------------------------

def payload(**extra):
    return {"id": ID, "name": "My VM_1", "mac_address": MAC, **extra}


def test_payload_without_extras_gives_hostname_and_dhcp_only():
    drive = guest_data.config_drive(payload(ip_address="192.168.123.40"))
    assert drive == configdrive.ConfigDrive(hostname="my-vm-1")
    assert drive.fixed_ip is None   # an address without its network: DHCP


def test_payload_extras_reach_the_drive():
    drive = guest_data.config_drive(payload(
        hostname="Given_Name", metadata={"role": "db"}, key_name="alice", key_data=KEY,
        user_data=base64.b64encode(b"#!/bin/sh\ntrue\n").decode(),
        availability_zone="az2", launch_index=1, ip_address="10.1.2.3",
        network={"cidr": "10.1.0.0/16", "gateway": "10.1.0.1", "dns": ["10.1.0.2"]}))
    assert drive == configdrive.ConfigDrive(
        hostname="given-name", public_keys=(("alice", KEY),), metadata={"role": "db"},
        user_data=b"#!/bin/sh\ntrue\n", availability_zone="az2", launch_index=1,
        fixed_ip=configdrive.FixedIP("10.1.2.3/16", gateway="10.1.0.1", dns=("10.1.0.2",)))


@pytest.mark.parametrize("extra", [
    {"user_data": "not base64!"},
    {"ip_address": "10.1.2.3", "network": {"cidr": "not a cidr"}},
    {"ip_address": "10.1.2.3", "network": {"gateway": "10.1.0.1"}},
    {"ip_address": "10.1.0.0", "network": {"cidr": "10.1.0.0/16"}}])
def test_bad_payload_extras_are_invalid(extra):
    with pytest.raises(exception.Invalid):
        guest_data.config_drive(payload(**extra))


# -- the libvirt driver (on libvirt's test driver) ----------------------------------

def test_cdrom_element_is_read_only_raw_ide():
    disk = vconfig.CdromConfig("/i/disk.config", cache="writeback").to_element()
    assert (disk.tag, disk.get("type"), disk.get("device")) == ("disk", "file", "cdrom")
    assert disk.find("driver").attrib == {"name": "qemu", "type": "raw", "cache": "writeback"}
    assert disk.find("source").get("file") == "/i/disk.config"
    assert disk.find("target").attrib == {"dev": "hdd", "bus": "ide"}
    assert disk.find("readonly") is not None


def make_conf(tmp_path):
    conf = cfg.ConfigOpts()
    config.register_opts(conf)
    conf([], project="mininova", default_config_files=[])
    conf.set_override("compute_driver", "fake-libvirt", group="compute")
    conf.set_override("instances_path", str(tmp_path / "instances"), group="compute")
    conf.set_override("connection_uri", "test:///default", group="libvirt")
    return conf


@pytest.fixture
def fake_driver(tmp_path):
    drv = fake_libvirt.FakeLibvirtDriver(make_conf(tmp_path))
    drv.init_host("cd-host")
    yield drv
    clean_up(drv)


def cdroms(drv, instance_id):
    dom = drv._host.get_connection().lookupByUUIDString(instance_id)
    return [d.find("source").get("file")
            for d in ET.fromstring(dom.XMLDesc(0)).iterfind("devices/disk[@device='cdrom']")]


def test_spawn_attaches_the_config_drive_and_destroy_removes_it(fake_driver, tmp_path):
    base = tmp_path / "base"
    base.write_bytes(b"base")
    inst = spec(configdrive.ConfigDrive(hostname="h", public_keys=(("k", KEY),)),
                instance_id=str(uuid.uuid4()))
    events = []
    fake_driver.spawn(inst, str(base), step=lambda e: events.append(e) or _Null())
    path = os.path.join(fake_driver.instances_path, inst.id, "disk.config")
    assert cdroms(fake_driver, inst.id) == [path]
    assert "config drive written" in events
    with open(path) as f:
        written = json.load(f)  # the fake's stand-in: the drive's files
    assert json.loads(written["openstack/latest/meta_data.json"])["public_keys"] == {"k": KEY}
    fake_driver.destroy(inst.id)
    assert not os.path.exists(os.path.dirname(path))


def test_spawn_without_config_drive_attaches_no_cdrom(fake_driver, tmp_path):
    base = tmp_path / "base"
    base.write_bytes(b"base")
    inst = spec(None, instance_id=str(uuid.uuid4()))
    fake_driver.spawn(inst, str(base))
    assert cdroms(fake_driver, inst.id) == []
    assert not os.path.exists(os.path.join(fake_driver.instances_path, inst.id, "disk.config"))


def test_a_moved_vm_has_its_config_drive_on_the_destination_and_after_a_revert(
        hosts, base_image):  # noqa: F811 (fixtures)
    a, b = hosts()
    drive = configdrive.ConfigDrive(hostname="mover", public_keys=(("k", KEY),))
    vm = spec(drive, instance_id=str(uuid.uuid4()))
    a.spawn(vm, base_image)
    disk_info = a.migrate_disk_and_power_off(vm.id, B)
    b.finish_migration(vm, disk_info, base_image)
    assert cdroms(b, vm.id) == [b.files.config_drive(vm.id)]
    with open(b.files.config_drive(vm.id)) as f:
        md = json.loads(json.load(f)["openstack/latest/meta_data.json"])
    assert (md["uuid"], md["public_keys"]) == (vm.id, {"k": KEY})

    b.destroy(vm.id)
    a.finish_revert_migration(vm)
    assert cdroms(a, vm.id) == [a.files.config_drive(vm.id)]
    assert os.path.isfile(a.files.config_drive(vm.id))

    # A live migration's destination has the drive before QEMU would open it.
    b.pre_live_migration(vm, base_image, {})
    assert os.path.isfile(b.files.config_drive(vm.id))
    b.rollback_live_migration_at_destination(vm.id)
    assert not os.path.exists(b.files.dir(vm.id))
    a.destroy(vm.id)


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# -- a build through the compute manager -------------------------------------------

@pytest.fixture
def build_host(conf, db, tmp_path):
    """(manager, driver, place): a compute manager on the fake-libvirt driver;
    ``place(**row_values)`` stores a VM spawning on its host and returns the
    build's (instance, image) payloads."""
    conf.set_override("compute_driver", "fake-libvirt", group="compute")
    drv = fake_libvirt.FakeLibvirtDriver(conf)
    drv.init_host(conf.host)
    src = tmp_path / "img"
    src.write_bytes(b"QFI\xfb" + b"\0" * 4092)
    checksum = hashlib.sha256(src.read_bytes()).hexdigest()
    cache = ImageCache(conf.compute.image_cache_path,
                       fetcher=lambda url: read_file_chunks(str(src)))
    manager = ComputeManager(drv, ConductorManager(db), cache, conf)
    ConductorManager(db).service_heartbeat(CTXT, conf.host, "mininova-compute",
                                           {"vcpus": 4, "memory_mb": 4096, "local_gb": 50})

    def place(metadata=None, **values):
        with db.transaction() as s:
            image = db_api.image_create(s, name="img", size=4096, checksum=checksum,
                                        min_ram=0, min_disk=0, location=str(src),
                                        disk_format="qcow2", status="active")
            row = db_api.instance_create(s, project_id="p", image_id=image.id, flavor_id="1",
                                         vcpus=1, memory_mb=128, root_gb=1,
                                         vm_state=states.BUILDING, task_state=states.SPAWNING,
                                         host=conf.host, mac_address=MAC, **values)
            instance_metadata.replace(s, row.id, metadata or {})
            allocations.allocate(s, row.id, conf.host, Resources(1, 128, 1), (16.0, 1.5, 1.0))
            return payloads.instance(row), payloads.image(image)
    yield manager, drv, place
    clean_up(drv)


CTXT = context.RequestContext(project_id="p")


def drive_files(drv, instance_id):
    with open(os.path.join(drv.instances_path, instance_id, "disk.config")) as f:
        return json.load(f)  # the fake's stand-in: the drive's files


def test_build_gives_the_vm_a_config_drive_from_its_payload(build_host):
    manager, drv, place = build_host
    instance, image = place(name="Web One")
    manager.build_instance(CTXT, dict(instance, key_name="alice", key_data=KEY,
                                      metadata={"role": "web"}), image)
    md = json.loads(drive_files(drv, instance["id"])["openstack/latest/meta_data.json"])
    assert (md["uuid"], md["hostname"]) == (instance["id"], "web-one")
    assert (md["public_keys"], md["meta"]) == ({"alice": KEY}, {"role": "web"})


def test_build_gives_the_vm_a_config_drive_from_its_stored_fields(build_host):
    """The build's payload carries none of them: the builder reads the VM's
    metadata, keypair and user_data from the conductor's instance_get."""
    manager, drv, place = build_host
    user_data = base64.b64encode(b"#cloud-config\n").decode()
    instance, image = place(name="web2", key_name="alice", key_data=KEY, user_data=user_data,
                            metadata={"role": "db", "tier": "2"})
    assert not set(payloads.GUEST_FIELDS) & set(instance)
    manager.build_instance(CTXT, instance, image)
    files = drive_files(drv, instance["id"])
    md = json.loads(files["openstack/latest/meta_data.json"])
    assert (md["public_keys"], md["meta"]) == ({"alice": KEY}, {"role": "db", "tier": "2"})
    assert files["openstack/latest/user_data"] == "#cloud-config\n"
