"""The network a VM's fixed IPv4 address comes from, as the compute host's
driver reads it from the hypervisor (the libvirt network's <ip> and its DHCP
range) and as the conductor's allocator receives it over RPC.

Fixed IPs are handed out from ``first``..``last`` (the network's DHCP range),
never the subnet's own address, its broadcast or the gateway. Hosts whose
networks share a name share one address pool (common/db/fixed_ips.py), so an
address is never given twice under that name, whichever host asks.
"""
import dataclasses
import ipaddress

from common import exception


@dataclasses.dataclass(frozen=True)
class FixedNetwork:
    name: str
    cidr: str                   # "192.168.123.0/24"
    first: str                  # the range fixed IPs come from, both ends included
    last: str
    gateway: str | None = None
    dns: tuple = ()
    # Addresses the network already gives to other MACs (its DHCP host
    # entries and leases, seen by the host that asks): skipped, so that a
    # guest of another deployment on the same libvirt network, or one that
    # took a lease before fixed IPs, never shares an address with ours.
    taken: tuple = ()

    def __post_init__(self):
        object.__setattr__(self, "dns", tuple(self.dns or ()))
        object.__setattr__(self, "taken", tuple(self.taken or ()))
        if not isinstance(self.name, str) or not self.name or len(self.name) > 255:
            raise exception.Invalid(reason="network name %r is not a name" % (self.name,))
        try:
            net = ipaddress.IPv4Network(self.cidr)
            first, last = ipaddress.IPv4Address(self.first), ipaddress.IPv4Address(self.last)
            gateway = None if self.gateway is None else ipaddress.IPv4Address(self.gateway)
            for server in self.dns:
                ipaddress.ip_address(server)
            for address in self.taken:
                ipaddress.IPv4Address(address)
        except (TypeError, ValueError) as exc:
            raise exception.Invalid(reason="network %r: %s" % (self.name, exc))
        if first not in net or last not in net or first > last:
            raise exception.Invalid(reason="network %r: range %s-%s is not inside %s"
                                    % (self.name, first, last, net))
        if gateway is not None and gateway not in net:
            raise exception.Invalid(reason="network %r: gateway %s is not inside %s"
                                    % (self.name, gateway, net))

    @property
    def network(self):
        return ipaddress.IPv4Network(self.cidr)

    def reserved(self):
        """Addresses of the range not to hand out (as ints): the subnet's own,
        its broadcast, the gateway and ``taken``."""
        net = self.network
        taken = {int(net.network_address), int(net.broadcast_address)}
        taken.update(int(ipaddress.IPv4Address(address)) for address in self.taken)
        if self.gateway is not None:
            taken.add(int(ipaddress.IPv4Address(self.gateway)))
        return taken

    def bounds(self):
        """(first, last) of the range as ints."""
        return int(ipaddress.IPv4Address(self.first)), int(ipaddress.IPv4Address(self.last))

    def to_dict(self):
        """The JSON-able form RPC messages and build payloads carry."""
        return {"name": self.name, "cidr": self.cidr, "first": self.first, "last": self.last,
                "gateway": self.gateway, "dns": list(self.dns), "taken": list(self.taken)}

    @classmethod
    def from_dict(cls, value):
        if not isinstance(value, dict):
            raise exception.Invalid(reason="network must be an object, not %r" % (value,))
        try:
            return cls(name=value["name"], cidr=value["cidr"], first=value["first"],
                       last=value["last"], gateway=value.get("gateway"),
                       dns=tuple(value.get("dns") or ()),
                       taken=tuple(value.get("taken") or ()))
        except KeyError as exc:
            raise exception.Invalid(reason="network %r lacks %s" % (value, exc))
