"""Config drives in OpenStack's format: what a guest learns about itself at boot.

A config drive is an ISO 9660 image labelled ``config-2`` with Rock Ridge and
Joliet, laid out as Nova writes it and as cloud-init's ConfigDrive datasource
(and CirrOS) read it::

    openstack/<version>/meta_data.json     uuid, name, hostname, public_keys, keys, meta, ...
    openstack/<version>/network_data.json  links, networks, services
    openstack/<version>/user_data          only when given; raw bytes
    openstack/<version>/vendor_data.json   {}
    openstack/<version>/vendor_data2.json  {}

for <version> in VERSIONS (identical content in each). No ``ec2/`` tree: no
mininova guest reads it, and cloud-init does not need it.

The image is made by genisoimage with Nova's own arguments (nova/virt/
configdrive.py), so guests see the bytes they have seen from Nova for a decade;
it is one short fork per build, from a staging directory that is removed again.
This module is pure apart from that: ``drive_files()`` returns the files, and
``make_iso()`` writes them. No libvirt here (the driver attaches the image).
"""
import base64
import dataclasses
import ipaddress
import json
import os
import re
import shutil
import subprocess
import tempfile

from common import exception

LABEL = "config-2"
# The newest dated version cloud-init (22.4, Debian 12) knows, which it then
# prefers, and "latest", which newer readers and CirrOS use.
VERSIONS = ("2018-08-27", "latest")
GENISOIMAGE = "genisoimage"
GENISOIMAGE_TIMEOUT = 60          # seconds; a few small files take milliseconds
MAX_USER_DATA = 65535             # Nova's limit (bytes)
HOSTNAME_MAX = 63
_HOSTNAME_JUNK = re.compile(r"[^a-z0-9.-]+")


def sanitize_hostname(name, instance_id):
    """Nova's hostname from a display name: lower case, spaces and underscores
    to '-', other characters dropped, at most 63 characters, no leading or
    trailing '.'/'-'; ``server-<id>`` when nothing is left."""
    host = re.sub(r"[ _]", "-", str(name).lower())
    host = _HOSTNAME_JUNK.sub("", host)[:HOSTNAME_MAX].strip(".-")
    return host or "server-%s" % instance_id


@dataclasses.dataclass(frozen=True)
class FixedIP:
    """The guest's own IPv4 address with its network (``address`` as
    'A.B.C.D/prefix'); from it network_data.json gets a static configuration."""

    address: str
    gateway: str | None = None
    dns: tuple = ()

    def __post_init__(self):
        object.__setattr__(self, "dns", tuple(self.dns))
        try:
            iface = ipaddress.IPv4Interface(self.address)
            if self.gateway is not None:
                ipaddress.IPv4Address(self.gateway)
            for server in self.dns:
                ipaddress.ip_address(server)
        except (ValueError, TypeError) as exc:
            raise exception.Invalid(reason="fixed IP %r: %s" % (self.address, exc))
        if iface.network.prefixlen == 32 or iface.ip == iface.network.network_address:
            raise exception.Invalid(reason="fixed IP %r is not a host address in a network"
                                    % self.address)

    @property
    def interface(self):
        return ipaddress.IPv4Interface(self.address)


@dataclasses.dataclass(frozen=True)
class ConfigDrive:
    """What goes on one VM's config drive besides its id, name, project and MAC
    (those come from the InstanceSpec).

    ``public_keys``: ((name, OpenSSH public key), ...) in order; ``metadata``:
    the server's metadata, a dict or (key, value) pairs of strings, kept as
    sorted pairs (the spec stays immutable); ``user_data``: bytes or None;
    ``fixed_ip``: a FixedIP (static network data) or None (DHCP).
    """

    hostname: str
    public_keys: tuple = ()
    metadata: tuple = ()
    user_data: bytes | None = None
    fixed_ip: FixedIP | None = None
    availability_zone: str = "nova"
    launch_index: int = 0

    def __post_init__(self):
        try:
            pairs = tuple(sorted(dict(self.metadata).items()))
        except (TypeError, ValueError):
            raise exception.Invalid(reason="metadata must map strings to strings")
        object.__setattr__(self, "metadata", pairs)
        object.__setattr__(self, "public_keys", tuple(
            tuple(p) if isinstance(p, (list, tuple)) else p for p in self.public_keys))
        if (not isinstance(self.hostname, str) or not self.hostname
                or self.hostname != sanitize_hostname(self.hostname, "x")):
            raise exception.Invalid(reason="hostname %r is not a host name" % (self.hostname,))
        for pair in self.public_keys:
            if (not isinstance(pair, tuple) or len(pair) != 2
                    or not all(isinstance(p, str) and p for p in pair)):
                raise exception.Invalid(reason="public_keys must be (name, key) string pairs")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in self.metadata):
            raise exception.Invalid(reason="metadata must map strings to strings")
        if self.user_data is not None:
            if not isinstance(self.user_data, bytes):
                raise exception.Invalid(reason="user_data must be bytes")
            if len(self.user_data) > MAX_USER_DATA:
                raise exception.Invalid(reason="user_data is %d bytes, more than %d"
                                        % (len(self.user_data), MAX_USER_DATA))
        if self.fixed_ip is not None and not isinstance(self.fixed_ip, FixedIP):
            raise exception.Invalid(reason="fixed_ip must be a FixedIP")
        if (not isinstance(self.launch_index, int) or isinstance(self.launch_index, bool)
                or self.launch_index < 0):
            raise exception.Invalid(reason="launch_index must be an integer >= 0")


def decode_user_data(text):
    """user_data as the APIs carry it (base64 text, as in Nova) -> bytes."""
    if text is None or text == "":
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (ValueError, TypeError) as exc:
        raise exception.Invalid(reason="user_data is not base64: %s" % exc)


def link_id(instance_id):
    """The name network_data.json gives the VM's one link (Nova: the tap device)."""
    return "tap" + instance_id[:11]


def meta_data(instance, drive):
    keys = [{"name": name, "type": "ssh", "data": key} for name, key in drive.public_keys]
    return {
        "uuid": instance.id,
        "name": instance.name,
        "hostname": drive.hostname,
        "project_id": instance.project_id,
        "availability_zone": drive.availability_zone,
        "launch_index": drive.launch_index,
        "public_keys": dict(drive.public_keys),
        "keys": keys,
        "meta": dict(drive.metadata),
        "devices": [],
        # As Nova: guests may seed their RNG with it (cloud-init decodes it).
        "random_seed": base64.b64encode(os.urandom(512)).decode("ascii"),
    }


def network_data(instance, drive):
    """Nova's network_data.json for the VM's one NIC: static when the drive has
    a fixed IP, else ``ipv4_dhcp``. Empty when the VM has no NIC."""
    if not instance.mac_address:
        return {"links": [], "networks": [], "services": []}
    link = link_id(instance.id)
    links = [{"id": link, "vif_id": instance.id, "type": "bridge", "mtu": 1500,
              "ethernet_mac_address": instance.mac_address.lower()}]
    network = {"id": "network0", "link": link, "network_id": "mininova"}
    services = []
    fixed = drive.fixed_ip
    if fixed is None:
        network["type"] = "ipv4_dhcp"
    else:
        iface = fixed.interface
        services = [{"type": "dns", "address": str(server)} for server in fixed.dns]
        network.update(type="ipv4", ip_address=str(iface.ip), netmask=str(iface.netmask),
                       routes=[], services=services)
        if fixed.gateway:
            network["routes"] = [{"network": "0.0.0.0", "netmask": "0.0.0.0",
                                  "gateway": fixed.gateway}]
    return {"links": links, "networks": [network], "services": services}


def _json(value):
    return (json.dumps(value, indent=1, sort_keys=True) + "\n").encode("utf-8")


def drive_files(instance):
    """{relative path: bytes} of ``instance``'s config drive (an InstanceSpec,
    or anything with id, name, project_id, mac_address and config_drive)."""
    drive = instance.config_drive
    per_version = {
        "meta_data.json": _json(meta_data(instance, drive)),
        "network_data.json": _json(network_data(instance, drive)),
        "vendor_data.json": _json({}),
        "vendor_data2.json": _json({}),
    }
    if drive.user_data is not None:
        per_version["user_data"] = drive.user_data
    return {"openstack/%s/%s" % (version, name): data
            for version in VERSIONS for name, data in per_version.items()}


def make_iso(files, path):
    """Write ``files`` ({relative path: bytes}) as an ISO 9660 image labelled
    config-2 at ``path`` (replaced atomically). The staging directory sits
    next to ``path`` and is removed whatever happens."""
    directory = os.path.dirname(os.path.abspath(path))
    staging = tempfile.mkdtemp(prefix=".config-drive.", dir=directory)
    partial = path + ".partial"
    try:
        for rel, data in files.items():
            target = os.path.join(staging, rel)
            if os.path.commonpath([staging, os.path.abspath(target)]) != staging:
                raise exception.Invalid(reason="config drive path %r escapes the drive" % rel)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as f:
                f.write(data)
        _genisoimage(partial, staging)
        os.replace(partial, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if os.path.exists(partial):
            os.unlink(partial)


def _genisoimage(output, source_dir):
    # Nova's arguments: Rock Ridge (-r) and Joliet (-J) names, lower case and
    # several dots allowed in ISO 9660 names too, long names (-l).
    cmd = [GENISOIMAGE, "-o", output, "-ldots", "-allow-lowercase", "-allow-multidot",
           "-l", "-publisher", "mininova", "-quiet", "-J", "-r", "-V", LABEL, source_dir]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True,
                              timeout=GENISOIMAGE_TIMEOUT, check=False)
    except FileNotFoundError:
        raise exception.HypervisorError(
            reason="%s is not installed (deploy/install-host.sh installs it)" % GENISOIMAGE)
    except subprocess.TimeoutExpired:
        raise exception.HypervisorError(reason="%s did not finish within %d s"
                                        % (GENISOIMAGE, GENISOIMAGE_TIMEOUT))
    if proc.returncode != 0:
        raise exception.HypervisorError(
            reason="%s failed (exit %d): %s" % (GENISOIMAGE, proc.returncode,
                                                (proc.stderr or proc.stdout).strip()))


def make_config_drive(instance, path):
    """The config drive of ``instance`` (whose ``config_drive`` is set) at ``path``."""
    make_iso(drive_files(instance), path)
