"""FakeLibvirtDriver: the libvirt driver on libvirt's own test driver (no QEMU).

Everything but the hypervisor is real: domain XML, metadata, ownership,
define/start/destroy/undefine, clean-up. Domains are type 'test' and the
overlay is a placeholder file. Failures are injected by the small subclasses
below (each replaces one spawn step), never by patching.

``test:///default`` is one in-memory host shared by every connection of the
process while at least one is open (it starts with a running domain named
"test" that is not ours). ``test:///<abs path to node XML>`` gives a private one.
"""
import json
import os
import shutil
import threading
import xml.etree.ElementTree as ET

import libvirt

from common import exception
from nova_compute.virt import configdrive
from nova_compute.virt.libvirt.driver import LibvirtDriver

DEFAULT_URI = "test:///default"
TEST_NETWORK_XML = """<network><name>%(name)s</name><forward mode='nat'/>
  <ip address='203.0.113.1' netmask='255.255.255.0'>
    <dhcp><range start='203.0.113.10' end='203.0.113.250'/></dhcp>
  </ip></network>"""


class FakeLibvirtDriver(LibvirtDriver):
    def _connection_uri(self, conf):
        uri = conf.libvirt.connection_uri
        return uri if uri.startswith("test://") else DEFAULT_URI

    def _connection_pool_size(self, conf):
        # The test driver runs in this process: no per-connection limit to
        # spread over, and a test:///<file> connection has a host of its own.
        return 0

    def _detect_virt_type(self):
        return "test"

    def init_host(self, host):
        super().init_host(host)
        if self.network_name:
            self._ensure_network()

    def _ensure_network(self):
        """The test driver's host has only "default": define ours (NAT, DHCP
        range .10-.250 of TEST-NET-3), as deploy/setup-network.sh does."""
        conn = self._connection()
        try:
            conn.networkLookupByName(self.network_name)
            return
        except libvirt.libvirtError:
            pass
        try:
            conn.networkDefineXML(TEST_NETWORK_XML % {"name": self.network_name}).create()
        except libvirt.libvirtError:
            conn.networkLookupByName(self.network_name)  # another driver defined it first

    def _create_overlay(self, instance, base_image_path, overlay_path):
        # No qemu-img: a placeholder naming its base is enough for the test driver.
        with open(overlay_path, "w", encoding="utf-8") as f:
            f.write("mininova fake overlay of %s, %d GiB\n" % (base_image_path, instance.root_gb))

    def _create_config_drive(self, instance, path):
        # No genisoimage: the drive's files as JSON stand in for the ISO image.
        with open(path, "w", encoding="utf-8") as f:
            json.dump({k: v.decode("utf-8", "replace")
                       for k, v in configdrive.drive_files(instance).items()}, f)

    def _disk_sizes(self, path):
        size = os.path.getsize(path)
        return size, size

    def _convert_disk(self, path, target_path):
        shutil.copyfile(path, target_path)

    def _adopt_disk(self, disk_info, disk_path, base_image_path, size):
        # The test driver cannot stream a volume; its hosts are in this process.
        shutil.copyfile(disk_info["path"], disk_path)

    def _migrate_live(self, dom, dest_uri, params, progress, abort):
        raise exception.MigrationError(instance=dom.UUIDString(),
                                       reason="libvirt's test driver cannot migrate")

    def _dhcp_leases(self):
        """The test driver has no DHCP: every NIC of a running domain of ours
        'holds' an address in TEST-NET-2, derived from its MAC."""
        leases = []
        for dom in self._connection().listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
            meta = self._metadata(dom)
            if meta is None or meta.host != self.host_name:
                continue
            for mac in ET.fromstring(dom.XMLDesc(0)).iterfind("devices/interface/mac"):
                address = mac.get("address").lower()
                leases.append((address, "198.51.100.%d" % (int(address[-2:], 16) % 250 + 2)))
        return leases


class FailingSpawnDriver(FakeLibvirtDriver):
    """The domain is defined and even started, then libvirt 'fails': spawn must
    destroy and undefine it and remove the instance directory."""

    def _launch_domain(self, dom):
        super()._launch_domain(dom)
        raise libvirt.libvirtError("injected failure after the domain started")


class SlowSpawnDriver(FakeLibvirtDriver):
    """The domain starts but stays paused, as a guest that never gets CPU: spawn
    must give up at spawn_timeout and clean up."""

    def _launch_domain(self, dom):
        super()._launch_domain(dom)
        dom.suspend()


class HangingStartDriver(FakeLibvirtDriver):
    """Starting never returns (as with type='kvm' where KVM cannot run guests)
    until ``release`` is set: spawn must still end at spawn_timeout."""

    def __init__(self, conf, **kwargs):
        super().__init__(conf, **kwargs)
        self.release = threading.Event()

    def _launch_domain(self, dom):
        self.release.wait(timeout=300)


class BusyHostStartDriver(FakeLibvirtDriver):
    """Starting fails with EAGAIN ``failures`` times before it works, as libvirt
    does when a host resource is short for a moment (a cgroup BPF program
    while many domains start at once): spawn must try again."""
    failures = 2

    def __init__(self, conf, **kwargs):
        super().__init__(conf, **kwargs)
        self.starts = 0

    def _launch_domain(self, dom):
        self.starts += 1
        if self.starts <= self.failures:
            raise libvirt.libvirtError("failed to load cgroup BPF prog: "
                                       "Resource temporarily unavailable")
        super()._launch_domain(dom)


class BusyForeverStartDriver(BusyHostStartDriver):
    failures = 1000
