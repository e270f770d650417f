"""A live migration between two lab hosts done straight with virsh, no
mininova: the floor the bench (P7) holds mininova's live migration against,
and the lab test that the sim hosts can do it at all.

A tiny guest (a qcow2 overlay on a base both hosts see at the same path, a
config drive asking for a console heartbeat, a pty serial console logged to a
file) runs on the source; ``migrate`` moves it with ``virsh migrate --live
--p2p --copy-storage-inc --persistent --undefinesource``, the destination's XML
naming the destination's own files (the sim hosts share one filesystem, so
each has its own directory; the destination's overlay is created fresh on the
same base first, as pre_live_migration does), and reads the completed job's
statistics on the destination.
"""
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET

TICK = re.compile(r"MININOVA-TICK boot=(\S+) up=([0-9.]+)")
BOOTED = "MININOVA-GUEST-BOOTED"

_XML = """<domain type='qemu'>
  <name>@NAME@</name>
  <uuid>@UUID@</uuid>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <features><acpi/></features>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='@DIR@/disk'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <source file='@DIR@/disk.config'/>
      <target dev='hdd' bus='ide'/>
      <readonly/>
    </disk>
    <serial type='pty'><log file='@DIR@/console.log' append='on'/><target port='0'/></serial>
    <console type='pty'><target type='serial' port='0'/></console>
  </devices>
</domain>
"""


def ticks(text):
    """[(boot id, uptime seconds)] of the heartbeat lines in console text."""
    return [(m.group(1), float(m.group(2))) for m in TICK.finditer(text)]


class RawGuest:
    """One tiny guest of the raw floor; ``workdir`` holds a directory per host."""

    def __init__(self, workdir, base_image, name=None, template=_XML):
        """``template``: the domain XML with @NAME@, @UUID@ and @DIR@ (the
        guest's directory on a host) in it; ``from_domain_xml`` makes one of
        another guest's (e.g. a mininova VM's: the same guest)."""
        self.workdir = workdir
        self.base = base_image
        self.uuid = str(uuid.uuid4())
        self.name = name or "raw-" + self.uuid[:8]
        self.host = None
        self.visited = []   # hosts where it has a directory
        self.template = template

    @classmethod
    def from_domain_xml(cls, workdir, base_image, domain_xml):
        """A guest defined as ``domain_xml``'s, but for its name, UUID,
        metadata (dropped) and files (disk, disk.config and console.log of
        its own directory)."""
        root = ET.fromstring(domain_xml)
        for tag in ("name", "uuid"):
            root.find(tag).text = "@%s@" % tag.upper()
        for meta in root.findall("metadata"):
            root.remove(meta)
        for disk in root.iter("disk"):  # the chain is read from the overlay itself
            for chain in disk.findall("backingStore"):
                disk.remove(chain)
        for elem in root.iter():
            path = elem.get("file")
            if path and os.path.basename(path) in ("disk", "disk.config", "console.log"):
                elem.set("file", "@DIR@/" + os.path.basename(path))
        return cls(workdir, base_image, template=ET.tostring(root, encoding="unicode"))

    def dir(self, sim):
        return os.path.join(self.workdir, sim.name, self.uuid)

    def xml(self, sim):
        return (self.template.replace("@NAME@", self.name).replace("@UUID@", self.uuid)
                .replace("@DIR@", self.dir(sim)))

    def prepare(self, sim):
        """The overlay (fresh, on the base) and config drive on ``sim``."""
        self.visited.append(sim)
        d = self.dir(sim)
        os.makedirs(d, exist_ok=True)
        for f in ("disk", "console.log"):
            if os.path.exists(os.path.join(d, f)):
                os.unlink(os.path.join(d, f))
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b",
                        self.base, os.path.join(d, "disk")], check=True, timeout=60)
        meta = {"uuid": self.uuid, "name": self.name, "hostname": self.name,
                "meta": {"mininova_tick": "1"}}
        with tempfile.TemporaryDirectory(dir=d) as staging:
            os.makedirs(os.path.join(staging, "openstack", "latest"))
            with open(os.path.join(staging, "openstack", "latest", "meta_data.json"), "w") as f:
                json.dump(meta, f)
            subprocess.run(["genisoimage", "-quiet", "-o", os.path.join(d, "disk.config"),
                            "-V", "config-2", "-r", "-J", staging], check=True, timeout=60)

    def start(self, sim):
        self.prepare(sim)
        path = os.path.join(self.dir(sim), "domain.xml")
        with open(path, "w") as f:
            f.write(self.xml(sim))
        _check(sim.virsh("define", path))
        _check(sim.virsh("start", self.name))
        self.host = sim

    def console(self, sim=None):
        try:
            with open(os.path.join(self.dir(sim or self.host), "console.log"),
                      errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def migrate(self, dest, timeout=300):
        """Live-migrate to ``dest`` (a SimHost); returns the completed job's
        statistics read on the destination (job_stats) plus ``wall_ms``,
        virsh's own run time."""
        source = self.host
        self.prepare(dest)
        xml = os.path.join(self.dir(dest), "domain.xml")
        with open(xml, "w") as f:
            f.write(self.xml(dest))
        t0 = time.monotonic()
        _check(source.virsh("migrate", "--live", "--p2p", "--copy-storage-inc", "--persistent",
                            "--undefinesource", "--migrate-disks", "vda", "--xml", xml,
                            self.name, dest.facts["MIGRATION_URI"], timeout=timeout))
        wall_ms = (time.monotonic() - t0) * 1000
        self.host = dest
        stats = job_stats(dest, self.name)
        stats["wall_ms"] = wall_ms
        return stats

    def destroy(self):
        """The domain and the guest's files on every host it was on."""
        for sim in [self.host] if self.host else []:
            sim.virsh("destroy", self.name)
            sim.virsh("undefine", self.name)
        for sim in self.visited:
            shutil.rmtree(self.dir(sim), ignore_errors=True)


def job_stats(sim, name):
    """libvirt's statistics of the last completed job of domain ``name`` on
    ``sim`` (dom.jobStats: time_elapsed and downtime in ms, memory_* and
    disk_* in bytes)."""
    import libvirt
    conn = sim.connect()
    try:
        return dict(conn.lookupByName(name).jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED))
    finally:
        conn.close()


def _check(proc):
    if proc.returncode != 0:
        raise RuntimeError("virsh failed (%d): %s" % (proc.returncode,
                                                    (proc.stderr or proc.stdout).strip()))
    return proc
