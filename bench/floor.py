"""The physical floor: what booting one guest costs with nothing but qemu-img
and libvirt-python, for the same image and the same domain settings as a
mininova VM.

The domain XML is built with mininova's own ``GuestConfig`` (disk with the same
cache mode, serial console logged to a file, the same NIC or none), so the
only difference with a mininova build is everything mininova adds around it:
the API, RabbitMQ, the scheduler, the conductor's writes, the compute manager.

One boot = ``qemu-img create`` of a qcow2 overlay on the base, ``defineXML``,
``create``, poll ``state()`` until RUNNING. Clean-up (destroy, undefine,
remove the overlay) is not timed. Floor domains are named ``minibench-<uuid>``
and their metadata names a host of their own, so no mininova compute ever
takes them for its own.
"""
import concurrent.futures
import datetime
import os
import shutil
import subprocess
import threading
import time
import uuid
import xml.etree.ElementTree as ET

import libvirt

from nova_compute.virt.libvirt import config as vconfig
from nova_compute.virt.libvirt import guest as vguest
from nova_compute.virt.libvirt import imagebackend

DOMAIN_PREFIX = "minibench-"


class Floor:
    def __init__(self, uri, base_path, workdir, virt_type, memory_mb, vcpus, root_gb,
                 disk_cache, network="", tag="bench"):
        self.uri = uri
        self.base_path = os.path.abspath(base_path)
        self.workdir = os.path.abspath(workdir)
        self.virt_type = virt_type
        self.memory_mb = memory_mb
        self.vcpus = vcpus
        self.root_gb = root_gb
        self.disk_cache = disk_cache
        self.network = network
        self.host = "bench-floor-" + tag
        os.makedirs(self.workdir, exist_ok=True)
        # Computed once, outside the timing (mininova asks qemu-img per build:
        # that is part of its overhead, not of the floor).
        self.overlay_bytes = imagebackend.overlay_size(
            root_gb, imagebackend.base_virtual_size(self.base_path))
        self.conn = libvirt.open(uri)
        self._lock = threading.Lock()
        self._live = set()

    # -- one domain -----------------------------------------------------------

    def guest_config(self, instance_id, disk_path, mac=None):
        devices = [vconfig.DiskConfig(disk_path, cache=self.disk_cache),
                   vconfig.SerialConsoleConfig(os.path.join(os.path.dirname(disk_path),
                                                            "console.log"))]
        if self.network and mac:
            devices.append(vconfig.InterfaceConfig(mac, self.network))
        created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        return vconfig.GuestConfig(
            virt_type=self.virt_type, uuid=instance_id, name=DOMAIN_PREFIX + instance_id,
            memory_mb=self.memory_mb, vcpus=self.vcpus,
            metadata=vconfig.InstanceMetadata(
                id=instance_id, name="floor", host=self.host, project_id="bench",
                vcpus=self.vcpus, memory_mb=self.memory_mb, root_gb=self.root_gb,
                image_id="floor", created=created),
            devices=devices)

    def boot(self, conn=None, steps=None):
        """One timed boot (on ``conn``, default the shared connection);
        returns (seconds, instance id). The domain stays running until
        ``destroy``. ``steps``, a dict, gets the seconds of each step."""
        conn = conn or self.conn
        steps = {} if steps is None else steps
        instance_id = str(uuid.uuid4())
        mac = "52:54:00:%02x:%02x:%02x" % tuple(os.urandom(3)) if self.network else None
        inst_dir = os.path.join(self.workdir, instance_id)
        disk = os.path.join(inst_dir, "disk")
        with self._lock:
            self._live.add(instance_id)
        t0 = time.monotonic()
        os.makedirs(inst_dir)
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2",
                        "-b", self.base_path, disk, str(self.overlay_bytes)],
                       check=True, capture_output=True)
        t1 = time.monotonic()
        xml = self.guest_config(instance_id, disk, mac).to_xml()
        dom = conn.defineXML(xml)
        t2 = time.monotonic()
        dom.create()
        t3 = time.monotonic()
        while dom.state()[0] not in vguest.RUNNING_STATES:
            if dom.state()[0] in vguest.STOPPED_STATES:
                raise RuntimeError("floor domain %s stopped while starting" % instance_id)
            time.sleep(0.001)
        t4 = time.monotonic()
        steps.update({"qemu-img create": t1 - t0, "defineXML": t2 - t1, "create": t3 - t2,
                      "until RUNNING": t4 - t3})
        return t4 - t0, instance_id

    def destroy(self, instance_id):
        try:
            dom = self.conn.lookupByUUIDString(instance_id)
        except libvirt.libvirtError:
            dom = None
        if dom is not None:
            vguest.power_off(dom)
            vguest.undefine(dom)
        shutil.rmtree(os.path.join(self.workdir, instance_id), ignore_errors=True)
        with self._lock:
            self._live.discard(instance_id)

    def domain_xml(self, instance_id):
        return self.conn.lookupByUUIDString(instance_id).XMLDesc(0)

    # -- many -----------------------------------------------------------------

    def parallel(self, n, own_connections=True):
        """``n`` boots from ``n`` threads at once; (wall seconds from the start
        to the last RUNNING, the seconds of each). All are destroyed after.

        ``own_connections``: each thread on a connection of its own, opened
        before the start (libvirtd serves at most max_client_requests = 5
        calls of one connection at a time: threads sharing one queue there)."""
        barrier = threading.Barrier(n + 1)
        conns = [libvirt.open(self.uri) if own_connections else self.conn for _ in range(n)]

        def one(i):
            barrier.wait()
            return self.boot(conns[i])
        with concurrent.futures.ThreadPoolExecutor(n) as pool:
            futures = [pool.submit(one, i) for i in range(n)]
            barrier.wait()
            t0 = time.monotonic()
            results = []
            errors = []
            for f in futures:
                try:
                    results.append(f.result())
                except Exception as exc:  # clean up the others before raising
                    errors.append(exc)
            wall = time.monotonic() - t0
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(self.destroy, [i for _, i in results]))
        if own_connections:
            for conn in conns:
                conn.close()
        if errors:
            raise errors[0]
        return wall, [s for s, _ in results]

    def close(self):
        """Destroy whatever is left (after an error) and close the connection."""
        for instance_id in list(self._live):
            try:
                self.destroy(instance_id)
            except Exception:
                pass
        try:
            self.conn.close()
        except libvirt.libvirtError:
            pass


def settings(domain_xml):
    """What must be equal between a floor domain and a mininova domain: the
    hypervisor settings that change how fast it boots (names, UUIDs, paths and
    MACs excepted), from the XML libvirt keeps (defaults filled in)."""
    root = ET.fromstring(domain_xml)
    disk = root.find("devices/disk[@device='disk']")
    driver = disk.find("driver") if disk is not None else None
    serial = root.find("devices/serial")
    os_type = root.find("os/type")

    def attrs(elem, *names):
        return None if elem is None else tuple(elem.get(n) for n in names)
    return {
        "type": root.get("type"),
        "memory_kib": root.findtext("memory"),
        "vcpu": root.findtext("vcpu"),
        "os": attrs(os_type, "arch", "machine"),
        "disk_driver": attrs(driver, "name", "type", "cache"),
        "disk_target": attrs(disk.find("target") if disk is not None else None, "bus"),
        "backing_format": attrs(disk.find("backingStore/format") if disk is not None else None,
                                "type"),
        "serial": attrs(serial, "type"),
        "serial_log": serial is not None and serial.find("log") is not None,
        "interfaces": [attrs(i.find("model"), "type")
                       for i in root.findall("devices/interface")],
        "features": sorted(f.tag for f in root.findall("features/*")),
        "clock": attrs(root.find("clock"), "offset"),
    }


def find_domains(conn, predicate):
    """Domains (any state) whose mininova metadata satisfies ``predicate(meta)``."""
    found = []
    for dom in conn.listAllDomains(0):
        try:
            meta = vconfig.InstanceMetadata.from_domain_xml(dom.XMLDesc(0))
        except libvirt.libvirtError:
            continue
        if meta is not None and predicate(meta):
            found.append(dom)
    return found


def remove_domains(conn, host):
    """Last-resort clean-up: destroy and undefine every domain whose metadata
    names ``host`` (a host name unique to one bench run); returns how many."""
    doms = find_domains(conn, lambda m: m.host == host)
    for dom in doms:
        try:
            vguest.power_off(dom)
            vguest.undefine(dom)
        except libvirt.libvirtError:
            pass
    return len(doms)
