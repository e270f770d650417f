"""What a VM's config drive says, from the build's instance payload.

Every VM gets a config drive (its id, name and host name at least). The
payload's optional keys, all absent today unless an API sends them:

- ``hostname``: else the name; either made a host name as Nova does
  (sanitize_hostname: "Web Server_1" -> "web-server-1")
- ``metadata``: {str: str}, the server's metadata ("meta" on the drive)
- ``user_data``: base64 text, as Nova's API takes and stores it
- ``key_name`` + ``key_data``: the keypair's name and OpenSSH public key
  (Nova's instance fields)
- ``availability_zone`` (default "nova"), ``launch_index`` (default 0)
- ``ip_address`` + ``network`` {"cidr": "A.B.C.0/24", "gateway": ..., "dns":
  [...]}: the VM's fixed IPv4 address and its network, allocated before boot
  (nova_compute/fixed_ips.py sets both); with both the guest configures that
  address statically. Without a network (``ip_address`` alone is also what a
  DHCP lease left in the row) the drive says DHCP.
"""
import ipaddress

from common import exception
from nova_compute.virt import configdrive


def _fixed_ip(instance):
    network, address = instance.get("network"), instance.get("ip_address")
    if not network or not address:
        return None
    try:
        prefix = ipaddress.IPv4Network(network["cidr"]).prefixlen
    except (KeyError, TypeError, ValueError) as exc:
        raise exception.Invalid(reason="network %r has no IPv4 cidr: %s" % (network, exc))
    return configdrive.FixedIP(address="%s/%d" % (address, prefix),
                               gateway=network.get("gateway"),
                               dns=tuple(network.get("dns") or ()))


def config_drive(instance):
    """The ConfigDrive of a build's instance dict (see the module's docstring)."""
    keys = ()
    if instance.get("key_data"):
        keys = ((instance.get("key_name") or "key", instance["key_data"]),)
    return configdrive.ConfigDrive(
        hostname=configdrive.sanitize_hostname(instance.get("hostname") or instance["name"],
                                               instance["id"]),
        public_keys=keys,
        metadata=instance.get("metadata") or {},
        user_data=configdrive.decode_user_data(instance.get("user_data")),
        fixed_ip=_fixed_ip(instance),
        availability_zone=instance.get("availability_zone") or "nova",
        launch_index=instance.get("launch_index") or 0)
