"""Addresses known at ACTIVE, on the real stack with real guests: the IP the
API shows the moment a VM is ACTIVE is allocated in the database, the libvirt
network's dnsmasq has a DHCP host entry for the VM's MAC with it, and the
tiny guest configures exactly that address (its console says so, it answers
ping there). A delete removes the entry and frees the address."""
import ipaddress
import re
import subprocess
import xml.etree.ElementTree as ET

import pytest
import sqlalchemy as sa

from mininova_lab.waiting import wait_for

pytestmark = pytest.mark.real_services("rabbitmq", "postgresql", "libvirt", "http")

UP = re.compile(r"MININOVA-GUEST-UP ip=(\d+\.\d+\.\d+\.\d+)")


def network_xml(stack, *flags):
    out = subprocess.run(["virsh", "-q", "-c", "qemu:///system", "net-dumpxml", *flags,
                          stack.network], capture_output=True, text=True, check=True,
                         timeout=60)
    return ET.fromstring(out.stdout)


def dnsmasq_hosts(stack):
    """The lines of the hosts file libvirt gives the network's dnsmasq."""
    try:
        with open("/var/lib/libvirt/dnsmasq/%s.hostsfile" % stack.network) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def dhcp_host(stack, instance_id, *flags):
    """(mac, ip) of the network's DHCP host entry named for the VM, or None
    (``--inactive``: in the persistent definition)."""
    for host in network_xml(stack, *flags).iterfind("ip/dhcp/host"):
        if host.get("name") == "mn-" + instance_id:
            return host.get("mac"), host.get("ip")
    return None


def held_by(stack, instance_id):
    engine = sa.create_engine(stack.db_url)
    try:
        with engine.begin() as c:
            return c.execute(sa.text("SELECT address FROM fixed_ips WHERE instance_id = :i"),
                             {"i": instance_id}).scalars().all()
    finally:
        engine.dispose()


def ping(ip):
    return subprocess.run(["ping", "-c1", "-W2", ip], capture_output=True).returncode == 0


@pytest.fixture
def cleanup(stack):
    ids = []
    yield ids
    for i in ids:
        stack.delete("/v1/vms/" + i)
    for i in ids:
        stack.wait_gone(i, timeout=120)


def boot(stack, name):
    r = stack.post("/v1/vms", {"name": name, "image": "tiny", "flavor": "m1.tiny"})
    assert r.status_code == 202, r.text
    return stack.wait_status(r.json()["vm"]["id"], "ACTIVE", timeout=120)


def test_the_address_at_active_is_the_one_the_guest_has(stack, cleanup):
    a = boot(stack, "fixed-a")
    cleanup.append(a["id"])
    b = boot(stack, "fixed-b")
    cleanup.append(b["id"])
    subnet = ipaddress.ip_interface("%s/%s" % (
        network_xml(stack).find("ip").get("address"),
        network_xml(stack).find("ip").get("netmask"))).network
    for vm in (a, b):
        # The first answer that says ACTIVE already has the address.
        (nic,) = vm["addresses"]
        assert nic["ip"] and ipaddress.ip_address(nic["ip"]) in subnet
        assert held_by(stack, vm["id"]) == [nic["ip"]]
        assert dhcp_host(stack, vm["id"]) == (nic["mac"], nic["ip"])
        assert dhcp_host(stack, vm["id"], "--inactive") == (nic["mac"], nic["ip"])
        assert "%s,%s,mn-%s" % (nic["mac"], nic["ip"], vm["id"]) in dnsmasq_hosts(stack)
    assert a["addresses"][0]["ip"] != b["addresses"][0]["ip"]

    for vm in (a, b):
        ip = vm["addresses"][0]["ip"]

        def guest_up():
            console = stack.get("/v1/vms/%s/console?lines=200" % vm["id"]).json()["output"]
            match = UP.search(console)
            return match.group(1) if match else None
        assert wait_for(guest_up, 180, interval=0.5, what="%s to configure its address"
                        % vm["name"]) == ip
        assert wait_for(lambda: ping(ip), 60, what="ping %s" % ip)
        assert stack.vm(vm["id"])["addresses"][0]["ip"] == ip  # no poller changed it

    stack.delete("/v1/vms/" + a["id"])
    stack.wait_gone(a["id"], timeout=120)
    assert dhcp_host(stack, a["id"]) is None
    assert dhcp_host(stack, a["id"], "--inactive") is None
    assert not [line for line in dnsmasq_hosts(stack) if a["id"] in line]
    assert held_by(stack, a["id"]) == []


def test_nova_api_shows_the_address_in_the_first_active_answer(stack):
    """P14: tempest reads /servers/{id}/ips right after ACTIVE."""
    compute = "/compute/v2.1"
    flavors = stack.get(compute + "/flavors").json()["flavors"]
    flavor = next(f["id"] for f in flavors if f["name"] == "m1.tiny")
    r = stack.post(compute + "/servers", {"server": {
        "name": "fixed-nova", "imageRef": stack.tiny["id"], "flavorRef": flavor}})
    assert r.status_code == 202, r.text
    server_id = r.json()["server"]["id"]
    try:
        def active():
            server = stack.get(compute + "/servers/" + server_id).json()["server"]
            assert server["status"] != "ERROR", server.get("fault")
            if server["status"] == "BUILD":
                assert server["addresses"] == {}
            return server if server["status"] == "ACTIVE" else None
        server = wait_for(active, 120, interval=0.1, what="the server to be ACTIVE")
        (network, nics), = server["addresses"].items()
        assert network == stack.network and [n["version"] for n in nics] == [4]
        ips = stack.get(compute + "/servers/%s/ips" % server_id).json()["addresses"]
        assert ips == {network: [{"version": 4, "addr": nics[0]["addr"]}]}
        assert held_by(stack, server_id) == [nics[0]["addr"]]
    finally:
        stack.delete(compute + "/servers/" + server_id)
        stack.wait_gone(server_id, timeout=120)
