"""The tiny guest image and the mininova network, straight on libvirt (no daemons).

deploy/build-tiny-image.sh builds the image (cached; path from
$MININOVA_TINY_IMAGE, default /var/cache/mininova/tiny.qcow2) and
deploy/setup-network.sh makes sure the libvirt network "mininova" runs. Then a
TCG domain on a qcow2 overlay must: print its boot markers on the serial
console, take a DHCP lease that libvirt reports (domain interfaceAddresses from
the lease source, and the network's DHCPLeases) and that matches the console,
answer ping from the host, power off on an ACPI power-button press within
seconds, and keep the first boot's console output across a restart.

Both console set-ups that keep output across restarts on libvirt 9.0 are
exercised: a pty with <log append='on'/> (interactive `virsh console` plus a
log) and a plain file with <source append='on'/>.

Run: cd /work/main && python -m pytest -q -s tests/functional/test_tiny_image.py
"""
import ipaddress
import os
import random
import re
import subprocess
import time
import uuid
from pathlib import Path

import libvirt
import pytest

from mininova_lab.waiting import wait_for

pytestmark = pytest.mark.real_services("libvirt")

REPO = Path(__file__).resolve().parents[2]
URI = "qemu:///system"
NETWORK = "mininova"
SUBNET = ipaddress.ip_network("192.168.123.0/24")
IMAGE = os.environ.get("MININOVA_TINY_IMAGE", "/var/cache/mininova/tiny.qcow2")

BOOTED = "MININOVA-GUEST-BOOTED"
UP = re.compile(r"MININOVA-GUEST-UP ip=(\d+\.\d+\.\d+\.\d+)")

# libvirt-python prints every error to stderr by default, expected ones too.
libvirt.registerErrorHandler(lambda ctx, err: None, None)


def _run(cmd, timeout):
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, "%s failed (%d):\n%s%s" % (
        " ".join(map(str, cmd)), out.returncode, out.stdout, out.stderr)
    return out


@pytest.fixture(scope="module")
def tiny_image():
    t0 = time.monotonic()
    _run(["bash", str(REPO / "deploy/build-tiny-image.sh"), IMAGE], timeout=900)
    print("\nbuild-tiny-image.sh: %.1f s (%s, %.1f MB)"
          % (time.monotonic() - t0, IMAGE, os.path.getsize(IMAGE) / 1e6))
    return os.path.abspath(IMAGE)


@pytest.fixture(scope="module")
def network():
    _run(["bash", str(REPO / "deploy/setup-network.sh")], timeout=120)
    return NETWORK


@pytest.fixture
def conn():
    c = libvirt.open(URI)
    yield c
    c.close()


@pytest.fixture
def domains(conn):
    """Define domains through this; each is destroyed and undefined afterwards,
    whatever happened."""
    made = []

    def define(xml):
        dom = conn.defineXML(xml)
        made.append(dom.name())
        return dom
    yield define
    for name in made:
        try:
            dom = conn.lookupByName(name)
        except libvirt.libvirtError:
            continue
        try:
            if dom.isActive():
                dom.destroy()
        except libvirt.libvirtError:
            pass
        try:
            dom.undefine()
        except libvirt.libvirtError:
            pass
        try:
            os.unlink("/var/log/libvirt/qemu/%s.log" % name)
        except FileNotFoundError:
            pass


def console_xml(kind, path):
    """Serial port + console whose output lands in ``path`` and survives a
    domain restart (append='on'; without it libvirt truncates at every start)."""
    if kind == "pty-log":
        return ("<serial type='pty'><log file='{p}' append='on'/><target port='0'/></serial>"
                "<console type='pty'><log file='{p}' append='on'/>"
                "<target type='serial' port='0'/></console>").format(p=path)
    return ("<serial type='file'><source path='{p}' append='on'/><target port='0'/></serial>"
            "<console type='file'><source path='{p}' append='on'/>"
            "<target type='serial' port='0'/></console>").format(p=path)


def domain_xml(name, disk, console, mac=None):
    nic = ("<interface type='network'><mac address='%s'/><source network='%s'/>"
           "<model type='virtio'/></interface>" % (mac, NETWORK)) if mac else ""
    # <acpi/> is what makes the power button exist: without it QEMU runs with
    # ACPI off and a "virsh shutdown" is never seen by the guest.
    return """<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type><boot dev='hd'/></os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='{disk}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    {nic}
    {console}
  </devices>
</domain>""".format(name=name, disk=disk, nic=nic, console=console)


def overlay(base, path):
    _run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base, str(path)],
         timeout=60)
    return str(path)


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def random_mac():
    return "52:54:00:%02x:%02x:%02x" % tuple(random.randrange(256) for _ in range(3))


def lease_ip(dom, mac):
    """The IPv4 address libvirt reports for ``mac`` from the DHCP lease source."""
    try:
        ifaces = dom.interfaceAddresses(libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE)
    except libvirt.libvirtError:
        return None
    for iface in ifaces.values():
        if (iface.get("hwaddr") or "").lower() == mac:
            for a in iface.get("addrs") or []:
                if a["type"] == libvirt.VIR_IP_ADDR_TYPE_IPV4:
                    return a["addr"]
    return None


def network_lease_ip(net, mac):
    for lease in net.DHCPLeases():
        if lease["mac"].lower() == mac and lease["type"] == libvirt.VIR_IP_ADDR_TYPE_IPV4:
            return lease["ipaddr"]
    return None


def ping(ip):
    return subprocess.run(["ping", "-c1", "-W2", ip], capture_output=True,
                          timeout=10).returncode == 0


@pytest.mark.parametrize("console", ["pty-log", "file"])
def test_tiny_guest_boots_leases_pings_powers_off_keeps_console(
        console, tiny_image, network, conn, domains, tmp_path):
    name = "mininova-tinytest-" + uuid.uuid4().hex[:8]
    mac = random_mac()
    log = str(tmp_path / "console.log")
    disk = overlay(tiny_image, tmp_path / "disk.qcow2")
    dom = domains(domain_xml(name, disk, console_xml(console, log), mac))
    net = conn.networkLookupByName(network)

    # Boot: watch the console and both lease APIs in one loop, note when each
    # first shows something.
    t0 = time.monotonic()
    dom.create()
    seen = {}

    def observe():
        text = read(log)
        now = time.monotonic() - t0
        if BOOTED in text:
            seen.setdefault("booted", now)
        m = UP.search(text)
        if m:
            seen.setdefault("console", (now, m.group(1)))
        ip = lease_ip(dom, mac)
        if ip:
            seen.setdefault("interfaceAddresses", (now, ip))
        ip = network_lease_ip(net, mac)
        if ip:
            seen.setdefault("DHCPLeases", (now, ip))
        if not dom.isActive():   # fail now, not at the deadline
            raise RuntimeError("domain stopped while booting:\n" + text)
        return len(seen) == 4

    try:
        wait_for(observe, 120, interval=0.05, what="boot marker, DHCP lease in console and libvirt")
    except AssertionError:
        print(read(log))
        raise
    print("\n[%s] start -> %s %.2f s; console IP %.2f s; interfaceAddresses(LEASE) %.2f s; "
          "DHCPLeases %.2f s" % (console, BOOTED, seen["booted"], seen["console"][0],
                                 seen["interfaceAddresses"][0], seen["DHCPLeases"][0]))
    ip = seen["console"][1]
    assert seen["interfaceAddresses"][1] == ip
    assert seen["DHCPLeases"][1] == ip
    assert ipaddress.ip_address(ip) in SUBNET

    t = time.monotonic()
    wait_for(lambda: ping(ip), 60, interval=0.2, what="ping %s" % ip)
    print("[%s] ping %s answered after %.2f s" % (console, ip, time.monotonic() - t))

    # ACPI power button -> busybox acpid -> poweroff -f.
    t = time.monotonic()
    dom.shutdownFlags(libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN)
    wait_for(lambda: not dom.isActive(), 60, what="ACPI shutdown")
    print("[%s] ACPI shutdown -> shut off in %.2f s" % (console, time.monotonic() - t))
    state, reason = dom.state()
    assert state == libvirt.VIR_DOMAIN_SHUTOFF
    assert reason == libvirt.VIR_DOMAIN_SHUTOFF_SHUTDOWN, reason   # the guest did it

    def powered_down():
        text = read(log)
        return text if "reboot: Power down" in text else None
    first = wait_for(powered_down, 10, what="the kernel's power-down line in the console log")
    assert "MININOVA-GUEST-POWEROFF" in first

    # Restart: the first boot's output must still be there, the second appended.
    t = time.monotonic()
    dom.create()
    wait_for(lambda: read(log).count(BOOTED) >= 2, 120, what="second boot marker")
    print("[%s] restart -> %s %.2f s" % (console, BOOTED, time.monotonic() - t))
    second = read(log)
    assert second.startswith(first), "console log lost the first boot"
    assert second.count(BOOTED) == 2


def test_tiny_guest_without_nic_reports_booted(tiny_image, conn, domains, tmp_path):
    log = str(tmp_path / "console.log")
    disk = overlay(tiny_image, tmp_path / "disk.qcow2")
    dom = domains(domain_xml("mininova-tinytest-" + uuid.uuid4().hex[:8], disk,
                             console_xml("file", log)))
    t0 = time.monotonic()
    dom.create()
    wait_for(lambda: "no eth0" in read(log), 120, what="boot without a NIC")
    print("\n[no NIC] start -> %s %.2f s" % (BOOTED, time.monotonic() - t0))
    text = read(log)
    assert BOOTED in text and not UP.search(text)
    dom.shutdownFlags(libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN)
    wait_for(lambda: not dom.isActive(), 60, what="ACPI shutdown")
