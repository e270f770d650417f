"""Domain XML of a mininova guest, built with ElementTree from plain values.

No XML is ever made by string formatting: user text (the VM name) only becomes
element text, escaped by the library. Devices are small objects with
``to_element()`` so that a NIC can later be appended to ``GuestConfig.devices``.
"""
import dataclasses
import re
import xml.etree.ElementTree as ET

METADATA_NS = "http://mininova.dev/xmlns/instance/1.0"
METADATA_PREFIX = "mininova"
ET.register_namespace(METADATA_PREFIX, METADATA_NS)

# Characters XML 1.0 cannot carry at all (not even escaped); libvirt would
# reject the whole document, so they are replaced in user text.
_XML_INVALID = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_safe_text(value):
    return _XML_INVALID.sub("\ufffd", str(value))


def _ns(tag):
    return "{%s}%s" % (METADATA_NS, tag)


def _local(tag):
    return tag.rsplit("}", 1)[-1]


def _sub(parent, tag, text=None, **attrs):
    elem = ET.SubElement(parent, tag, {k: str(v) for k, v in attrs.items()})
    if text is not None:
        elem.text = xml_safe_text(text)
    return elem


@dataclasses.dataclass(frozen=True)
class InstanceMetadata:
    """What mininova writes into <metadata>; ``host`` decides ownership."""

    id: str
    name: str
    host: str
    project_id: str
    vcpus: int
    memory_mb: int
    root_gb: int
    image_id: str
    created: str  # ISO 8601, UTC

    def to_element(self):
        root = ET.Element(_ns("instance"))
        _sub(root, _ns("id"), self.id)
        _sub(root, _ns("name"), self.name)
        _sub(root, _ns("host"), self.host)
        _sub(root, _ns("project"), self.project_id)
        _sub(root, _ns("flavor"), vcpus=self.vcpus, memory_mb=self.memory_mb,
             root_gb=self.root_gb)
        _sub(root, _ns("image"), self.image_id)
        _sub(root, _ns("created"), self.created)
        return root

    @classmethod
    def from_xml(cls, text):
        """Parse the metadata element as virDomain.metadata() returns it (libvirt
        may drop the namespace there, so tags are compared by local name).
        Returns None for anything that is not complete mininova metadata."""
        try:
            root = ET.fromstring(text)
        except ET.ParseError:
            return None
        if _local(root.tag) != "instance":
            return None
        children = {}
        for child in root:
            children.setdefault(_local(child.tag), child)
        flavor = children.get("flavor")
        fields = {tag: (children[tag].text or "") if tag in children else None
                  for tag in ("id", "name", "host", "project", "image", "created")}
        if flavor is None or None in fields.values():
            return None
        try:
            sizes = {k: int(flavor.get(k)) for k in ("vcpus", "memory_mb", "root_gb")}
        except (TypeError, ValueError):
            return None
        return cls(id=fields["id"], name=fields["name"], host=fields["host"],
                   project_id=fields["project"], image_id=fields["image"],
                   created=fields["created"], **sizes)

    @classmethod
    def from_domain_xml(cls, domain_xml):
        """Find our metadata inside a whole domain XML (fallback to metadata())."""
        try:
            root = ET.fromstring(domain_xml)
        except ET.ParseError:
            return None
        elem = root.find("metadata/" + _ns("instance"))
        return None if elem is None else cls.from_xml(ET.tostring(elem, "unicode"))


@dataclasses.dataclass
class DiskConfig:
    source_path: str
    cache: str = "none"          # "writeback" where O_DIRECT is not supported
    driver_format: str = "qcow2"
    target_dev: str = "vda"
    target_bus: str = "virtio"

    def to_element(self):
        disk = ET.Element("disk", type="file", device="disk")
        _sub(disk, "driver", name="qemu", type=self.driver_format, cache=self.cache)
        _sub(disk, "source", file=self.source_path)
        _sub(disk, "target", dev=self.target_dev, bus=self.target_bus)
        return disk


@dataclasses.dataclass
class CdromConfig:
    """A read-only CD-ROM backed by a raw image file (the config drive).

    IDE, as Nova's default for a config drive on the 'pc' machine: the PIIX
    controller is always there, and guests need no virtio driver to read it.
    'hdd' is the last IDE slot (Nova's choice too), clear of any other disk."""

    source_path: str
    cache: str = "none"
    target_dev: str = "hdd"
    target_bus: str = "ide"

    def to_element(self):
        disk = ET.Element("disk", type="file", device="cdrom")
        _sub(disk, "driver", name="qemu", type="raw", cache=self.cache)
        _sub(disk, "source", file=self.source_path)
        _sub(disk, "target", dev=self.target_dev, bus=self.target_bus)
        _sub(disk, "readonly")
        return disk


@dataclasses.dataclass
class SerialConsoleConfig:
    """A pty serial port (for `virsh console`) whose output is also logged to
    ``log_path``; append='on' because libvirt truncates the log at each start
    otherwise, and a restart must not lose earlier output."""

    log_path: str | None = None

    def to_elements(self):
        serial = ET.Element("serial", type="pty")
        if self.log_path:
            _sub(serial, "log", file=self.log_path, append="on")
        _sub(serial, "target", port=0)
        console = ET.Element("console", type="pty")
        _sub(console, "target", type="serial", port=0)
        return [serial, console]


@dataclasses.dataclass
class InterfaceConfig:
    """A virtio NIC on a libvirt network, with the MAC recorded in the DB."""

    mac_address: str
    network: str
    model: str = "virtio"

    def to_element(self):
        iface = ET.Element("interface", type="network")
        _sub(iface, "mac", address=self.mac_address)
        _sub(iface, "source", network=self.network)
        _sub(iface, "model", type=self.model)
        return iface


@dataclasses.dataclass
class GuestConfig:
    virt_type: str               # "qemu", "kvm" or "test"
    uuid: str
    name: str                    # domain name, mininova-<uuid>; never user text
    memory_mb: int
    vcpus: int
    metadata: InstanceMetadata
    devices: list = dataclasses.field(default_factory=list)
    arch: str = "x86_64"
    machine: str = "pc"

    def to_element(self):
        dom = ET.Element("domain", type=self.virt_type)
        _sub(dom, "name", self.name)
        _sub(dom, "uuid", self.uuid)
        meta = _sub(dom, "metadata")
        meta.append(self.metadata.to_element())
        _sub(dom, "memory", self.memory_mb, unit="MiB")
        _sub(dom, "currentMemory", self.memory_mb, unit="MiB")
        _sub(dom, "vcpu", self.vcpus)
        os_elem = _sub(dom, "os")
        _sub(os_elem, "type", "hvm", arch=self.arch, machine=self.machine)
        _sub(os_elem, "boot", dev="hd")
        features = _sub(dom, "features")
        _sub(features, "acpi")
        _sub(features, "apic")
        _sub(dom, "clock", offset="utc")
        _sub(dom, "on_poweroff", "destroy")
        _sub(dom, "on_reboot", "restart")
        _sub(dom, "on_crash", "destroy")
        devices = _sub(dom, "devices")
        for device in self.devices:
            if hasattr(device, "to_elements"):
                devices.extend(device.to_elements())
            else:
                devices.append(device.to_element())
        return dom

    def to_xml(self):
        return ET.tostring(self.to_element(), encoding="unicode")
