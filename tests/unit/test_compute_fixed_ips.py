"""A VM's fixed IP before boot: allocated through the conductor from the
network the driver reads, a DHCP host entry for its MAC, the address on its
config drive and in its row before ACTIVE; entry and address gone after a
failed build, a reschedule and a delete. On libvirt's test driver
(FakeLibvirtDriver, its network defined like deploy/setup-network.sh's) and
the in-memory FakeDriver."""
import json
import os
import uuid

import libvirt
import pytest

from common import context, exception, rpc, states
from common.db import api as db_api
from common.db import fixed_ips
from common.fixed_networks import FixedNetwork
from nova_compute.virt import fake, fake_libvirt
from nova_compute.virt.libvirt import network as vnetwork
from nova_conductor import rpcapi as conductor_rpcapi
from nova_conductor.manager import ConductorManager
from tests.conftest import Recorder
from tests.unit.test_compute_build_reports import assert_no_fixed_ip, dhcp_entries
from tests.unit.test_compute_manager import (  # noqa: F401 (fixture)
    CTXT, base_image, make_manager, placed_vm, row)

SETUP_NETWORK_XML = """<network xmlns:dnsmasq='http://libvirt.org/schemas/network/dnsmasq/1.0'>
  <name>mininova</name><forward mode='nat'/><bridge name='virbr-mn' stp='off' delay='0'/>
  <ip address='192.168.123.1' netmask='255.255.255.0'>
    <dhcp><range start='192.168.123.10' end='192.168.123.250'/>
      <host mac='52:54:00:00:00:01' ip='192.168.123.77' name='mn-x'/></dhcp>
  </ip>
  <ip family='ipv6' address='fd00::1' prefix='64'/>
</network>"""


# -- the network's description, from its XML --------------------------------------

def test_the_network_of_setup_network_sh():
    assert vnetwork.fixed_network(SETUP_NETWORK_XML) == FixedNetwork(
        name="mininova", cidr="192.168.123.0/24", first="192.168.123.10",
        last="192.168.123.250", gateway="192.168.123.1", dns=("192.168.123.1",),
        taken=("192.168.123.77",))
    assert vnetwork.dhcp_hosts(SETUP_NETWORK_XML) == [
        ("52:54:00:00:00:01", "192.168.123.77", "mn-x")]


def test_addresses_given_to_other_macs_are_taken():
    leases = [("52:54:00:00:00:02", "192.168.123.12"), ("52:54:00:00:00:03", "192.168.123.9")]
    net = vnetwork.fixed_network(SETUP_NETWORK_XML, leases, mac="52:54:00:00:00:03")
    assert net.taken == ("192.168.123.12", "192.168.123.77")
    assert vnetwork.fixed_network(SETUP_NETWORK_XML, mac="52:54:00:00:00:01").taken == ()


def test_taken_addresses_are_not_allocated(db):
    net = FixedNetwork(name="n", cidr="192.0.2.0/24", first="192.0.2.10", last="192.0.2.12",
                       taken=("192.0.2.10", "192.0.2.12"))
    with db.transaction() as s:
        assert fixed_ips.allocate(s, net, "vm-1", "h1") == "192.0.2.11"
        with pytest.raises(exception.NoMoreFixedIps):
            fixed_ips.allocate(s, net, "vm-2", "h1")


def test_a_vm_moves_off_an_address_the_network_now_gives_to_another_mac(db):
    net = FixedNetwork(name="n", cidr="192.0.2.0/24", first="192.0.2.10", last="192.0.2.12")
    with db.transaction() as s:
        assert fixed_ips.allocate(s, net, "vm-1", "h1") == "192.0.2.10"
    moved = FixedNetwork(name="n", cidr="192.0.2.0/24", first="192.0.2.10",
                         last="192.0.2.12", taken=("192.0.2.10",))
    with db.transaction() as s:
        assert fixed_ips.allocate(s, moved, "vm-1", "h1") == "192.0.2.11"
        assert fixed_ips.held(s) == {"192.0.2.11": "vm-1"}


def test_a_network_without_dhcp_range_or_dns():
    xml = ("<network><name>n</name><dns enable='no'/>"
           "<ip address='10.1.0.1' prefix='28'/></network>")
    assert vnetwork.fixed_network(xml) == FixedNetwork(
        name="n", cidr="10.1.0.0/28", first="10.1.0.1", last="10.1.0.14",
        gateway="10.1.0.1", dns=())


def test_a_network_without_ipv4_has_no_fixed_ips():
    assert vnetwork.fixed_network("<network><name>n</name>"
                                  "<ip family='ipv6' address='fd00::1' prefix='64'/></network>") is None


# -- DHCP host entries on libvirt's test driver ------------------------------------

VM1, VM2 = "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"


@pytest.fixture
def drv(conf):
    conf.set_override("compute_driver", "fake-libvirt", group="compute")
    d = fake_libvirt.FakeLibvirtDriver(conf)
    d.init_host(conf.host)
    yield d
    for instance_id in (VM1, VM2):
        d.unplug_fixed_ip(instance_id)
    d.cleanup_host()


def entries(d):
    return {k: v for k, v in dhcp_entries_of(d).items() if k in (VM1, VM2)}


def dhcp_entries_of(d):
    net = d._connection().networkLookupByName(d.network_name)
    return {name[len(vnetwork.HOST_NAME_PREFIX):]: (mac, ip)
            for mac, ip, name in vnetwork.dhcp_hosts(net.XMLDesc(0))}


def test_plug_is_idempotent_and_unplug_too(drv):
    assert drv.get_fixed_network().cidr == "203.0.113.0/24"
    drv.plug_fixed_ip(VM1, "52:54:00:AB:00:01", "203.0.113.20")
    drv.plug_fixed_ip(VM1, "52:54:00:ab:00:01", "203.0.113.20")
    assert entries(drv) == {VM1: ("52:54:00:ab:00:01", "203.0.113.20")}
    drv.unplug_fixed_ip(VM1)
    drv.unplug_fixed_ip(VM1)
    assert entries(drv) == {}


def test_plug_refuses_an_address_another_mac_has_and_replaces_its_own_older_entry(drv):
    drv.plug_fixed_ip(VM1, "52:54:00:ab:00:01", "203.0.113.20")
    with pytest.raises(exception.FixedIpInUse, match="52:54:00:ab:00:01"):
        drv.plug_fixed_ip(VM2, "52:54:00:ab:00:02", "203.0.113.20")
    assert entries(drv) == {VM1: ("52:54:00:ab:00:01", "203.0.113.20")}  # not touched
    drv.plug_fixed_ip(VM2, "52:54:00:ab:00:02", "203.0.113.21")
    drv.plug_fixed_ip(VM2, "52:54:00:ab:00:02", "203.0.113.22")  # moved: one entry
    assert entries(drv) == {VM1: ("52:54:00:ab:00:01", "203.0.113.20"),
                            VM2: ("52:54:00:ab:00:02", "203.0.113.22")}


class NetworkRacedAtAdd:
    """A libvirt network on which another deployment adds an entry for the
    same address between plug's read and its ADD."""

    def __init__(self, net, foreign):
        self.net, self.foreign = net, foreign

    def __getattr__(self, name):
        return getattr(self.net, name)

    def update(self, command, section, index, xml, flags):
        if command == libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST and self.foreign:
            self.net.update(command, section, index, self.foreign, flags)
            self.foreign = None
        return self.net.update(command, section, index, xml, flags)


def test_plug_losing_the_race_at_add_says_the_address_is_in_use(drv):
    net = drv._connection().networkLookupByName(drv.network_name)
    raced = NetworkRacedAtAdd(net, "<host mac='52:54:00:ee:ee:ee' ip='203.0.113.30' "
                                   "name='mn-%s'/>" % VM2)
    with pytest.raises(exception.FixedIpInUse, match="52:54:00:ee:ee:ee"):
        vnetwork.plug(raced, VM1, "52:54:00:ab:00:01", "203.0.113.30")
    assert entries(drv) == {VM2: ("52:54:00:ee:ee:ee", "203.0.113.30")}


def test_the_in_memory_fake_keeps_the_same_plan(conf):
    d = fake.FakeDriver(conf)
    d.init_host(conf.host)
    assert d.get_fixed_network().name == "mininova"
    d.plug_fixed_ip(VM1, "52:54:00:AB:00:01", "10.0.0.10")
    with pytest.raises(exception.FixedIpInUse):
        d.plug_fixed_ip(VM2, "52:54:00:ab:00:02", "10.0.0.10")
    d.plug_fixed_ip(VM2, "52:54:00:ab:00:02", "10.0.0.11")
    assert d.get_fixed_network("52:54:00:ab:00:01").taken == ("10.0.0.11",)
    assert d.get_fixed_network("52:54:00:ab:00:02").taken == ("10.0.0.10",)
    d.unplug_fixed_ip(VM2)
    d.unplug_fixed_ip(VM2)
    assert d.dhcp_hosts == {VM1: ("52:54:00:ab:00:01", "10.0.0.10")}
    conf.set_override("network_name", "", group="compute")
    assert fake.FakeDriver(conf).get_fixed_network() is None


# -- builds ---------------------------------------------------------------------------

def drive_network_data(conf, instance_id):
    """network_data.json of the VM's config drive (the fake writes its files as JSON)."""
    with open(os.path.join(conf.compute.instances_path, instance_id, "disk.config")) as f:
        return json.loads(json.load(f)["openstack/latest/network_data.json"])


def test_the_address_is_in_the_row_the_network_and_the_drive_before_active(
        db, conf, base_image):
    seen = {}

    class Watching(ConductorManager):  # what the row says when ACTIVE is reported
        def instance_spawned(self, ctxt, instance_id, *args, **kwargs):
            seen["ip"] = row(db, instance_id).ip_address
            return super().instance_spawned(ctxt, instance_id, *args, **kwargs)

    manager = make_manager(conf, db, conductor=Watching(db))
    try:
        instance, image = placed_vm(db, conf, *base_image)
        manager.sources[image["id"]] = base_image[0]
        manager.build_instance(CTXT, instance, image)
        inst = row(db, instance["id"])
        assert inst.vm_state == states.ACTIVE and seen["ip"] == inst.ip_address == "203.0.113.10"
        assert dhcp_entries(manager)[instance["id"]] == ("52:54:00:00:00:2a", "203.0.113.10")
        net, = drive_network_data(conf, instance["id"])["networks"]
        assert (net["type"], net["ip_address"], net["netmask"]) == (
            "ipv4", "203.0.113.10", "255.255.255.0")
        assert net["routes"][0]["gateway"] == "203.0.113.1"

        manager.build_instance(CTXT, instance, image)  # redelivered: the same address
        assert row(db, instance["id"]).ip_address == "203.0.113.10"

        manager.terminate_instance(CTXT, instance["id"])
        assert_no_fixed_ip(manager, db, instance["id"])
        again, image = placed_vm(db, conf, *base_image, name="vm2")
        manager.sources[image["id"]] = base_image[0]
        manager.build_instance(CTXT, again, image)
        assert row(db, again["id"]).ip_address == "203.0.113.11"  # never-used first
        manager.terminate_instance(CTXT, again["id"])
    finally:
        for inst in manager.driver.list_instances():
            manager.driver.destroy(inst["id"])
        manager.driver.cleanup_host()


def test_a_failed_spawn_leaves_no_entry_and_no_address(conf, db, base_image):
    manager = make_manager(conf, db, fake_libvirt.FailingSpawnDriver)
    try:
        instance, image = placed_vm(db, conf, *base_image)
        manager.sources[image["id"]] = base_image[0]
        manager.build_instance(CTXT, instance, image)
        inst = row(db, instance["id"])
        assert inst.vm_state == states.ERROR and inst.ip_address is None
        assert_no_fixed_ip(manager, db, instance["id"])
    finally:
        manager.driver.cleanup_host()


def test_a_rescheduled_build_gives_its_address_back(conf, db, base_image):
    build_task = Recorder()
    conductor = ConductorManager(db, build_task=build_task, max_attempts=2)
    manager = make_manager(conf, db, fake_libvirt.FailingSpawnDriver, conductor=conductor)
    try:
        instance, image = placed_vm(db, conf, *base_image)
        manager.sources[image["id"]] = base_image[0]
        manager.build_instance(CTXT, instance, image)
        inst = row(db, instance["id"])
        assert (inst.task_state, inst.host, inst.ip_address) == (states.SCHEDULING, None, None)
        assert [c[0] for c in build_task.calls] == ["build_instances"]
        assert_no_fixed_ip(manager, db, instance["id"])
    finally:
        manager.driver.cleanup_host()


def test_no_address_for_a_vm_no_longer_spawning_here(db, conf, base_image):
    conductor = ConductorManager(db)
    instance, _ = placed_vm(db, conf, *base_image)
    network = FixedNetwork(name="n", cidr="192.0.2.0/24", first="192.0.2.10",
                           last="192.0.2.20").to_dict()
    assert conductor.fixed_ip_allocate(CTXT, instance["id"], "other-host", network) is None
    with db.transaction() as s:
        db_api.instance_update_if(s, instance["id"], {"task_state": states.DELETING})
    assert conductor.fixed_ip_allocate(CTXT, instance["id"], conf.host, network) is None
    with db.transaction() as s:
        db_api.instance_soft_delete(s, instance["id"])
    assert conductor.fixed_ip_allocate(CTXT, instance["id"], conf.host, network) is None
    with db.transaction() as s:
        assert fixed_ips.held(s) == {}
    with pytest.raises(exception.Invalid):
        conductor.fixed_ip_allocate(CTXT, instance["id"], conf.host, {"name": "n"})


def test_a_conductor_older_than_1_3_is_not_asked():
    transport = rpc.get_transport("memory://%s" % uuid.uuid4().hex)
    api = conductor_rpcapi.ConductorRPCAPI(transport, timeout=5, version_cap="1.2")
    assert api.fixed_ip_allocate(context.RequestContext(), "vm", "h1", {}) is None
    assert transport.queue_length("conductor") == 0


def test_a_build_cut_short_by_a_restart_gives_entry_and_address_back(conf, db, base_image):
    manager = make_manager(conf, db)
    try:
        instance, image = placed_vm(db, conf, *base_image)
        manager.fixed_ips.allocate_for_instance(CTXT, instance)  # then the host went down
        os.makedirs(os.path.join(conf.compute.instances_path, instance["id"]))
        assert instance["id"] in dhcp_entries(manager)
        manager.settle_interrupted(CTXT)
        assert row(db, instance["id"]).vm_state == states.ERROR
        assert_no_fixed_ip(manager, db, instance["id"])
    finally:
        manager.driver.cleanup_host()


def test_a_reaped_orphan_leaves_no_entry(conf, db, base_image):
    conf.set_override("reap_orphans", True, group="compute")
    manager = make_manager(conf, db)
    try:
        instance, image = placed_vm(db, conf, *base_image)
        manager.sources[image["id"]] = base_image[0]
        manager.build_instance(CTXT, instance, image)
        with db.transaction() as s:  # the row goes, the domain and its entry stay
            db_api.instance_soft_delete(s, instance["id"])
        assert instance["id"] in dhcp_entries(manager)
        manager.reconcile(CTXT)
        assert manager.driver.list_instances() == []
        assert_no_fixed_ip(manager, db, instance["id"])
    finally:
        manager.driver.cleanup_host()


class RacedDriver(fake_libvirt.FakeLibvirtDriver):
    """Another deployment's guest on the same network gets the allocated
    address between the network's read and the first plug."""
    raced = False

    def plug_fixed_ip(self, instance_id, mac, address):
        if not self.raced:
            self.raced = True
            super().plug_fixed_ip(VM2, "52:54:00:ee:ee:ee", address)
        super().plug_fixed_ip(instance_id, mac, address)


def test_an_address_taken_on_the_network_meanwhile_is_allocated_anew(conf, db, base_image):
    manager = make_manager(conf, db, RacedDriver)
    try:
        instance, image = placed_vm(db, conf, *base_image)
        manager.sources[image["id"]] = base_image[0]
        manager.build_instance(CTXT, instance, image)
        inst = row(db, instance["id"])
        assert inst.vm_state == states.ACTIVE and inst.ip_address == "203.0.113.11"
        assert dhcp_entries(manager)[VM2] == ("52:54:00:ee:ee:ee", "203.0.113.10")  # theirs
        assert dhcp_entries(manager)[instance["id"]] == ("52:54:00:00:00:2a", "203.0.113.11")
        with db.transaction() as s:
            assert fixed_ips.held(s) == {"203.0.113.11": instance["id"]}
        manager.terminate_instance(CTXT, instance["id"])
    finally:
        manager.driver.unplug_fixed_ip(VM2)
        manager.driver.cleanup_host()
