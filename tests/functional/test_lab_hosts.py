"""Simulated compute hosts (deploy/lab/sim-host.sh, mininova_lab/sim_host.py).

Two sim hosts, each with its own real libvirtd and network namespace: QEMU
domains run on both at once, each visible only on its own libvirtd (not on the
other, not on the host's qemu:///system), and processes in a host's netns reach
RabbitMQ and HTTP servers of the root namespace over the veth. The host's own
libvirtd, used by other tests at the same time, is never touched: only read.
Run with -s to see the timings.
"""
import http.server
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from contextlib import ExitStack

import pytest

from mininova_lab import services
from tests import prerequisites
from mininova_lab.sim_host import SimHost
from mininova_lab.stack import domain_names, qemu_img_create
from mininova_lab.waiting import wait_for

pytestmark = pytest.mark.real_services("libvirt")

HOST_URI = "qemu:///system"
MiB = 1024


def _require():
    missing = [c for c in ("unshare", "nsenter", "ip", "tini", "libvirtd", "virtlogd", "virsh",
                           "qemu-img") if not shutil.which(c)]
    reason = None
    if os.geteuid() != 0:
        reason = "sim hosts need root (network and mount namespaces)"
    elif missing:
        reason = "missing %s (deploy/install-host.sh installs them)" % ", ".join(missing)
    prerequisites.require(reason is None, reason)


def host_libvirtd_pids():
    out = subprocess.run(["pgrep", "-x", "libvirtd"], capture_output=True, text=True).stdout
    return sorted(int(p) for p in out.split())


def report(msg):
    print("\n[lab] " + msg, end="", flush=True)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """Two sim hosts for the module; both torn down even when a test (or the
    second host's set-up) fails."""
    _require()
    base = str(tmp_path_factory.mktemp("lab"))
    tag = uuid.uuid4().hex[:6]
    libvirtd_before = host_libvirtd_pids()
    with ExitStack() as stack:
        hosts = []
        for suffix in ("a", "b"):
            host = stack.enter_context(SimHost("lt%s%s" % (tag, suffix), base_dir=base))
            report("sim host %s up in %.2f s: %s, %s in %s" % (
                host.name, host.up_seconds, host.libvirt_uri, host.host_ip, host.netns))
            hosts.append(host)
        yield {"base": base, "hosts": hosts, "tag": tag, "libvirtd_before": libvirtd_before}


def blank_overlay(workdir, name):
    base = os.path.join(workdir, "base.qcow2")
    if not os.path.exists(base):
        qemu_img_create(base, "1G")
    overlay = os.path.join(workdir, name + ".qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base,
                    overlay], check=True)
    return overlay


def domain_xml(name, disk, mem_mib=96):
    return """<domain type='qemu'>
  <name>%s</name>
  <memory unit='KiB'>%d</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type><boot dev='hd'/></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='%s'/>
      <target dev='vda' bus='virtio'/>
    </disk>
  </devices>
</domain>""" % (name, mem_mib * MiB, disk)


def ns_of(pid, kind):
    return os.readlink("/proc/%d/ns/%s" % (pid, kind))


def qemu_pid(host, name):
    with open(os.path.join(host.lab_dir, "run", "qemu", name + ".pid")) as f:
        return int(f.read().strip())


def test_domains_run_on_both_private_libvirtds_and_nowhere_else(lab, tmp_path):
    import libvirt
    hosts = lab["hosts"]
    conns = [h.connect() for h in hosts]
    names = ["lab-%s-%s" % (lab["tag"], h.name) for h in hosts]
    defined = []
    try:
        for host, conn, name in zip(hosts, conns, names):
            assert conn.getHostname() == host.name
            dom = conn.defineXML(domain_xml(name, blank_overlay(str(tmp_path), name)))
            defined.append(dom)
            t0 = time.monotonic()
            dom.create()
            wait_for(lambda: dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING, 30,
                     what="%s running on %s" % (name, host.name))
            report("domain %s: define done, start took %.2f s on %s" % (
                name, time.monotonic() - t0, host.name))

        # Both run at once; each libvirtd lists its own domain only.
        for host, conn, name, other in zip(hosts, conns, names, reversed(names)):
            listed = {d.name() for d in conn.listAllDomains()}
            assert name in listed and other not in listed, (host.name, listed)
            assert conn.lookupByName(name).state()[0] == libvirt.VIR_DOMAIN_RUNNING
            # The QEMU process runs in the host's network namespace and sees the
            # host's private /var/lib/libvirt (libvirt gives each domain a mount
            # namespace of its own, a child of libvirtd's).
            pid = qemu_pid(host, name)
            seen = os.stat("/proc/%d/root/var/lib/libvirt" % pid)
            private = os.stat(os.path.join(host.lab_dir, "lib"))
            assert (seen.st_dev, seen.st_ino) == (private.st_dev, private.st_ino)
            assert ns_of(pid, "mnt") != ns_of(os.getpid(), "mnt")
            assert ns_of(pid, "net") == "net:[%d]" % os.stat("/run/netns/" + host.netns).st_ino
            assert ns_of(pid, "net") != ns_of(os.getpid(), "net")
        main = domain_names(HOST_URI)
        assert not set(names) & main, "sim host domains leaked into %s: %s" % (HOST_URI, main)

        for host in hosts:
            st = host.status()
            assert st["STATE"] == "up"
            report("%s: libvirtd RSS %s KiB, virtlogd RSS %s KiB, domains %s" % (
                host.name, st["LIBVIRTD_RSS_KB"], st["VIRTLOGD_RSS_KB"], st["DOMAINS"]))
    finally:
        for dom in defined:
            try:
                dom.destroy()
            except libvirt.libvirtError:
                pass
            dom.undefine()
        for conn in conns:
            conn.close()


RABBIT_PROBE = """
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), 5)
s.settimeout(5)
s.sendall(b"AMQP\\x00\\x00\\x09\\x01")
frame = s.recv(7)
assert frame[:3] == b"\\x01\\x00\\x00", frame   # method frame on channel 0: connection.start
print("ok")
"""

KOMBU_LOGIN = """
import sys, kombu
with kombu.Connection(sys.argv[1], connect_timeout=5) as c:
    c.connect()
    assert c.connected
    print("ok", c.connection.server_properties.get("product"))
"""


@pytest.mark.real_services("libvirt", "rabbitmq")
def test_netns_reaches_rabbitmq_at_the_gateway(lab):
    for host in lab["hosts"]:
        out = host.run([sys.executable, "-c", RABBIT_PROBE, host.gateway_ip,
                        str(services.rabbit_port())], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
        # A real AMQP login as mininova's RabbitMQ user, through the forwarder.
        url = "amqp://" + services.rabbit_url(host=host.gateway_ip).split("://", 1)[1]
        out = host.run([sys.executable, "-c", KOMBU_LOGIN, url],
                       capture_output=True, text=True, timeout=30, cwd=os.getcwd())
        assert out.returncode == 0 and out.stdout.startswith("ok"), out.stderr


LIBVIRT_FROM_NETNS = """
import sys, libvirt
conn = libvirt.open(sys.argv[1])
print(conn.getHostname(), len(conn.listAllDomains()))
"""


def test_an_agent_in_the_netns_reaches_its_libvirtd(lab):
    # The per-host libvirt socket is a filesystem path: it works from any netns.
    for host in lab["hosts"]:
        out = host.run([sys.executable, "-c", LIBVIRT_FROM_NETNS, host.libvirt_uri],
                       capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split()[0] == host.name


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"lab-ok from " + self.client_address[0].encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    servers = []

    def start(address):
        srv = http.server.ThreadingHTTPServer((address, 0), _Handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return srv.server_address[1]

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


HTTP_GET = """
import sys, urllib.request
print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())
"""


def test_netns_reaches_http_servers_of_the_root_namespace(lab, http_server):
    any_port = http_server("0.0.0.0")
    local_port = http_server("127.0.0.1")
    for host in lab["hosts"]:
        # A server on 0.0.0.0 answers on the gateway address directly; the
        # request really comes from the host's own address over the veth.
        out = host.run([sys.executable, "-c", HTTP_GET,
                        "http://%s:%d/" % (host.gateway_ip, any_port)],
                       capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "lab-ok from " + host.host_ip
        # A server on 127.0.0.1 only (like the API's default) needs a forward.
        addr = host.forward(local_port)
        out = host.run([sys.executable, "-c", HTTP_GET, "http://%s/" % addr],
                       capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "lab-ok from 127.0.0.1"


def test_netns_is_a_separate_network(lab):
    a, b = lab["hosts"]
    # Loopback is up inside, and it is the netns' own: nothing listens on RabbitMQ's port there.
    out = a.run(["ip", "-o", "addr", "show"], capture_output=True, text=True, check=True)
    assert "127.0.0.1/8" in out.stdout and a.host_ip + "/24" in out.stdout
    port = services.rabbit_port()
    refused = a.run([sys.executable, "-c",
                     "import socket; socket.create_connection(('127.0.0.1', %d), 2)" % port],
                    capture_output=True, text=True, timeout=30)
    assert refused.returncode != 0 and "ConnectionRefused" in refused.stderr
    # Sim hosts reach each other over the root namespace (10.77.0.0/16 route).
    out = a.run(["ping", "-c", "1", "-W", "2", b.host_ip], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    # Unplugged: the host is cut off (a "dead host" as far as the network goes).
    a.set_link(False)
    try:
        cut = a.run([sys.executable, "-c", "import socket; socket.create_connection(('%s', %d), 1)"
                     % (a.gateway_ip, port)], capture_output=True, text=True, timeout=30)
        assert cut.returncode != 0
    finally:
        a.set_link(True)
    wait_for(lambda: a.run([sys.executable, "-c", RABBIT_PROBE, a.gateway_ip, str(port)],
                           capture_output=True, timeout=30).returncode == 0, 20,
             what="%s reconnected" % a.name)


def test_up_is_idempotent_libvirtd_restart_and_down_cleans_up(lab, tmp_path):
    import libvirt
    base = lab["base"]
    host = SimHost("lt%sc" % lab["tag"], base_dir=base)
    try:
        host.up()
        report("sim host %s up in %.2f s" % (host.name, host.up_seconds))
        facts = dict(host.facts)
        t0 = time.monotonic()
        host.up()   # again: nothing changes
        report("second up (no-op) in %.2f s" % (time.monotonic() - t0))
        assert host.facts == facts

        name = "lab-%s-c" % lab["tag"]
        conn = host.connect()
        dom = conn.defineXML(domain_xml(name, blank_overlay(str(tmp_path), name)))
        dom.create()
        conn.close()
        pid = qemu_pid(host, name)

        # libvirtd dies (kill -9): up restarts it in the same namespaces and it
        # reconnects to the running QEMU.
        libvirtd_pid = int(host.status()["LIBVIRTD_PID"])
        os.kill(libvirtd_pid, 9)
        wait_for(lambda: host.status().get("STATE") == "broken", 20, what="libvirtd gone")
        host.up()
        conn = host.connect()
        assert conn.lookupByName(name).state()[0] == libvirt.VIR_DOMAIN_RUNNING
        assert qemu_pid(host, name) == pid
        conn.close()

        # A process of the host (an agent) in its netns.
        agent = host.popen(["sleep", "300"])
        t0 = time.monotonic()
        host.down()
        report("sim host %s down (with a running domain and an agent) in %.2f s" % (
            host.name, time.monotonic() - t0))
        assert agent.wait(10) is not None
        assert not os.path.exists("/proc/%d" % pid) or _zombie(pid), "QEMU survived down"
        assert not os.path.exists(host.lab_dir)
        assert not os.path.exists("/run/netns/" + host.netns)
        assert not os.path.exists("/sys/class/net/mnh%d" % host.index)
        host.down()   # idempotent
    finally:
        host.down()


def _zombie(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_host_libvirtd_is_not_disturbed(lab):
    # Runs last in this module: the host's libvirtd is the same process as
    # before the sim hosts came up, still answers, and `pgrep -x libvirtd`
    # (deploy/start-libvirt.sh) sees no sim host daemon.
    assert host_libvirtd_pids() == lab["libvirtd_before"]
    out = subprocess.run(["virsh", "-c", HOST_URI, "version"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    for host in lab["hosts"]:
        st = host.status()
        assert int(st["LIBVIRTD_PID"]) not in lab["libvirtd_before"]
