"""Domain XML as built from values (no libvirt needed)."""
import xml.etree.ElementTree as ET

from nova_compute.virt.libvirt import config as vconfig

NS = "{%s}" % vconfig.METADATA_NS
UUID = "0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d"


def guest(name="web-1", **kwargs):
    meta = vconfig.InstanceMetadata(id=UUID, name=name, host="compute-a", project_id="p1",
                                    vcpus=2, memory_mb=256, root_gb=3, image_id="img",
                                    created="2026-01-01T00:00:00+00:00")
    return vconfig.GuestConfig(virt_type="qemu", uuid=UUID, name="mininova-" + UUID,
                               memory_mb=256, vcpus=2, metadata=meta,
                               devices=[vconfig.DiskConfig("/i/%s/disk" % UUID, **kwargs),
                                        vconfig.SerialConsoleConfig()])


def test_domain_xml_layout():
    dom = ET.fromstring(guest().to_xml())
    assert dom.get("type") == "qemu"
    assert dom.findtext("name") == "mininova-" + UUID and dom.findtext("uuid") == UUID
    for tag in ("memory", "currentMemory"):
        assert (dom.find(tag).get("unit"), dom.findtext(tag)) == ("MiB", "256")
    assert dom.findtext("vcpu") == "2"
    os_type = dom.find("os/type")
    assert (os_type.text, os_type.get("arch"), os_type.get("machine")) == ("hvm", "x86_64", "pc")
    assert dom.find("os/boot").get("dev") == "hd"
    assert dom.find("features/acpi") is not None and dom.find("features/apic") is not None
    assert dom.find("clock").get("offset") == "utc"
    assert [dom.findtext(t) for t in ("on_poweroff", "on_reboot", "on_crash")] == [
        "destroy", "restart", "destroy"]
    disk = dom.find("devices/disk")
    assert disk.find("driver").attrib == {"name": "qemu", "type": "qcow2", "cache": "none"}
    assert disk.find("source").get("file") == "/i/%s/disk" % UUID
    assert disk.find("target").attrib == {"dev": "vda", "bus": "virtio"}
    assert dom.find("devices/serial").get("type") == "pty"
    assert dom.find("devices/console/target").get("type") == "serial"
    assert dom.find("devices/interface") is None  # no network yet


def test_metadata_is_namespaced_and_parses_back():
    g = guest(name="a<b&\"c'")
    dom = ET.fromstring(g.to_xml())
    inst = dom.find("metadata/%sinstance" % NS)
    assert inst.findtext(NS + "host") == "compute-a"
    assert inst.find(NS + "flavor").attrib == {"vcpus": "2", "memory_mb": "256", "root_gb": "3"}
    assert vconfig.InstanceMetadata.from_domain_xml(g.to_xml()) == g.metadata


def test_user_text_cannot_inject_markup():
    xml = guest(name="</mininova:name><mininova:host>evil</mininova:host>").to_xml()
    meta = vconfig.InstanceMetadata.from_domain_xml(xml)
    assert meta.host == "compute-a"
    assert meta.name == "</mininova:name><mininova:host>evil</mininova:host>"


def test_writeback_cache_where_direct_io_is_missing():
    dom = ET.fromstring(guest(cache="writeback").to_xml())
    assert dom.find("devices/disk/driver").get("cache") == "writeback"


def test_incomplete_or_foreign_metadata_is_not_ours():
    assert vconfig.InstanceMetadata.from_xml("<instance><host>h</host></instance>") is None
    assert vconfig.InstanceMetadata.from_xml("<other/>") is None
    assert vconfig.InstanceMetadata.from_xml("not xml") is None
