"""A libvirt network as the fixed IPs' network: its subnet and DHCP range
read from its XML, and the DHCP host entries (``<host mac ip name/>`` in its
``<ip><dhcp>``) that make its dnsmasq hand each VM the address the database
allocated, changed with virNetworkUpdate on the running network and its
persistent definition alike (so they survive a restart of the network).

Each entry is named after its instance (``mn-<id>``): it can be removed by
the instance's id alone, whether or not its domain still exists.
"""
import ipaddress
import threading
import xml.etree.ElementTree as ET

import libvirt

from common import exception
from common.fixed_networks import FixedNetwork

HOST_NAME_PREFIX = "mn-"  # libvirt wants a host name that starts with a letter

_updates = threading.Lock()  # read-modify-write of one process's entries


def host_name(instance_id):
    return HOST_NAME_PREFIX + instance_id


def _ipv4_elements(root):
    for ip in root.iterfind("ip"):
        if ip.get("family", "ipv4") == "ipv4" and ip.get("address"):
            yield ip


def fixed_network(xml, leases=(), mac=None):
    """The FixedNetwork of a network's XML (its first IPv4 <ip>), or None
    when it has no IPv4 subnet. The range: the DHCP range's first; without
    one, every host address of the subnet. DNS: the gateway's dnsmasq,
    unless the network's DNS is off. Taken: the addresses of the host entries
    and of ``leases`` ([(mac, ip)]) of MACs other than ``mac``."""
    root = ET.fromstring(xml)
    ip = next(_ipv4_elements(root), None)
    if ip is None:
        return None
    mask = ip.get("netmask") or ip.get("prefix") or "24"
    try:
        iface = ipaddress.IPv4Interface("%s/%s" % (ip.get("address"), mask))
    except ValueError as exc:
        raise exception.HypervisorError(reason="network %s: %s" % (root.findtext("name"), exc))
    span = ip.find("dhcp/range")
    if span is not None:
        first, last = span.get("start"), span.get("end")
    else:
        hosts = iface.network.hosts()
        first = str(next(hosts))
        last = str(iface.network.broadcast_address - 1)
    dns_off = root.find("dns") is not None and root.find("dns").get("enable") == "no"
    gateway = str(iface.ip)
    mac = (mac or "").lower()
    given = [(m, a) for m, a, _name in dhcp_hosts(xml)] + list(leases)
    taken = sorted({a for m, a in given if a and (m or "").lower() != mac},
                   key=ipaddress.IPv4Address)
    return FixedNetwork(name=root.findtext("name"), cidr=str(iface.network), first=first,
                        last=last, gateway=gateway, dns=() if dns_off else (gateway,),
                        taken=tuple(taken))


def dhcp_hosts(xml):
    """[(mac, ip, name)] of the DHCP host entries of the network's IPv4 subnets."""
    root = ET.fromstring(xml)
    return [((h.get("mac") or "").lower() or None, h.get("ip"), h.get("name"))
            for ip in _ipv4_elements(root) for h in ip.iterfind("dhcp/host")]


def _host_xml(mac=None, ip=None, name=None):
    element = ET.Element("host")
    for key, value in (("mac", mac), ("ip", ip), ("name", name)):
        if value:
            element.set(key, value)
    return ET.tostring(element, encoding="unicode")


def _flags(net):
    flags = 0
    if net.isActive():
        flags |= libvirt.VIR_NETWORK_UPDATE_AFFECT_LIVE
    if net.isPersistent():
        flags |= libvirt.VIR_NETWORK_UPDATE_AFFECT_CONFIG
    return flags


def _delete(net, mac, ip, name):
    try:
        net.update(libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE,
                   libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST, -1, _host_xml(mac, ip, name),
                   _flags(net))
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_OPERATION_INVALID:
            raise  # OPERATION_INVALID: no such entry (any more)


def _in_use(net, entries, mac, address):
    """FixedIpInUse if one of ``entries`` gives ``address`` to another MAC."""
    for other_mac, ip, _name in entries:
        if ip == address and other_mac != mac:
            raise exception.FixedIpInUse(address=address, network=net.name(), mac=other_mac)


def plug(net, instance_id, mac, address):
    """One DHCP host entry mac -> address named for the instance; older
    entries of the instance (its MAC or name, another address) are removed
    first. FixedIpInUse when the network gives the address to another MAC:
    not ours to remove (another deployment on this network may have put it
    there since the address was allocated)."""
    mac, name = mac.lower(), host_name(instance_id)
    wanted = (mac, address, name)
    with _updates:
        entries = dhcp_hosts(net.XMLDesc(0))
        _in_use(net, entries, mac, address)
        for entry in entries:
            if entry != wanted and (entry[0] == mac or entry[2] == name):
                _delete(net, *entry)
        if wanted in entries:
            return
        try:
            net.update(libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST,
                       libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST, -1, _host_xml(*wanted),
                       _flags(net))
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_OPERATION_INVALID:
                _in_use(net, dhcp_hosts(net.XMLDesc(0)), mac, address)  # added meanwhile
            raise


def unplug(net, instance_id):
    """No DHCP host entry named for the instance is left."""
    name = host_name(instance_id)
    with _updates:
        for entry in dhcp_hosts(net.XMLDesc(0)):
            if entry[2] == name:
                _delete(net, *entry)
