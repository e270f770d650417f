#!/usr/bin/env python3
"""Check libvirt-python against this host: connect to qemu:///system and
test:///default, then boot a tiny TCG domain, `virsh destroy` it and measure how
long the VIR_DOMAIN_EVENT_STOPPED lifecycle event takes to arrive.
Run with the venv's python after install-host.sh + start-libvirt.sh."""
import os, subprocess, sys, tempfile, threading, time
import libvirt
from importlib.metadata import version

URI = "qemu:///system"
libvirt.virEventRegisterDefaultImpl()          # must come before open()
def _event_loop():
    while True:
        libvirt.virEventRunDefaultImpl()
threading.Thread(target=_event_loop, daemon=True).start()

v = libvirt.getVersion()
print(f"libvirt-python {version('libvirt-python')}, libvirt {v // 1000000}.{v // 1000 % 1000}.{v % 1000}")
conn = libvirt.open(URI)
print("getInfo:", conn.getInfo())
test = libvirt.open("test:///default")
names = [d.name() for d in test.listAllDomains()]
print("test:///default domains:", names)
assert "test" in names
test.close()

stopped = threading.Event()
stop_at = []
def cb(_conn, dom, event, detail, _opaque):
    if event == libvirt.VIR_DOMAIN_EVENT_STOPPED and dom.name() == name:
        stop_at.append(time.monotonic()); stopped.set()
conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, cb, None)

name = f"mininova-evtest-{os.getpid()}"
with tempfile.TemporaryDirectory(dir="/var/lib/libvirt/images") as d:
    base, ovl = f"{d}/base.qcow2", f"{d}/overlay.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", base, "1G"], check=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base, ovl], check=True)
    xml = f"""<domain type='qemu'><name>{name}</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>
      <os><type arch='x86_64'>hvm</type></os><devices><disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/><source file='{ovl}'/><target dev='vda' bus='virtio'/>
      </disk></devices></domain>"""
    dom = conn.defineXML(xml)
    try:
        dom.create()
        assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
        latencies = []
        for i in range(int(sys.argv[1]) if len(sys.argv) > 1 else 3):
            if i:
                stopped.clear(); stop_at.clear(); dom.create()
            time.sleep(0.5)
            t0 = time.monotonic()
            subprocess.run(["virsh", "-c", URI, "destroy", name], check=True, stdout=subprocess.DEVNULL)
            t1 = time.monotonic()
            assert stopped.wait(10), "no STOPPED event within 10 s"
            latencies.append((stop_at[0] - t0, stop_at[0] - t1))
        for a, b in latencies:
            rel = f"{abs(b)*1000:.0f} ms {'before' if b < 0 else 'after'} virsh exited"
            print(f"STOPPED event {a*1000:.0f} ms after `virsh destroy` was run ({rel})")
    finally:
        if dom.isActive():
            dom.destroy()
        dom.undefine()
        if os.path.exists(f"/var/log/libvirt/qemu/{name}.log"):
            os.remove(f"/var/log/libvirt/qemu/{name}.log")
conn.close()
print("OK")
