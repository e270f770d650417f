"""``mininova-manage doctor``: each check pointed at a broken fixture says what
is wrong and the fix. Services that need the real RabbitMQ/PostgreSQL/libvirtd
or another user are in tests/functional/test_doctor.py."""
import email.utils
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
import types

import libvirt
import pytest

from nova_manage.doctor import FAIL, OK, WARN, command, host_checks, libvirt_checks, \
    service_checks, userprobe
from mininova_lab.waiting import wait_for


def one(results):
    assert len(results) == 1, results
    return results[0]


# -- kvm ---------------------------------------------------------------------

@pytest.fixture
def cpu(tmp_path):
    def make(flags, kvm_device=True):
        info = tmp_path / "cpuinfo"
        info.write_text("processor\t: 0\nflags\t\t: fpu sse2 %s\n\n" % flags)
        dev = tmp_path / "kvm"
        if kvm_device:
            dev.write_text("")
        return str(info), str(dev)
    return make


def test_kvm_usable_with_vmx_and_device(cpu):
    info, dev = cpu("vmx")
    r = one(libvirt_checks.check_kvm("auto", info, dev))
    assert r.status == OK and "kvm" in r.what


def test_kvm_device_without_cpu_flags_is_tcg(cpu):
    info, dev = cpu("hypervisor")
    r = one(libvirt_checks.check_kvm("auto", info, dev))
    assert r.status == WARN
    assert r.what.startswith("TCG in use because %s shows no vmx/svm" % info)
    assert "%s exists but cannot run guests" % dev in r.what
    assert "nested virtualisation" in r.fix


def test_kvm_flags_without_device_says_modprobe(cpu):
    info, dev = cpu("svm", kvm_device=False)
    r = one(libvirt_checks.check_kvm("auto", info, dev))
    assert r.status == WARN and "%s is missing" % dev in r.what
    assert r.fix == "modprobe kvm_amd"


def test_virt_type_kvm_without_hardware_fails(cpu):
    info, dev = cpu("")
    r = one(libvirt_checks.check_kvm("kvm", info, dev))
    assert r.status == FAIL and "virt_type = kvm" in r.what and "hang" in r.what
    assert "virt_type = auto" in r.fix


def test_virt_type_qemu_forced_although_kvm_usable(cpu):
    info, dev = cpu("vmx")
    r = one(libvirt_checks.check_kvm("qemu", info, dev))
    assert r.status == WARN and "virt_type = qemu" in r.what
    assert r.fix == "set [libvirt] virt_type = auto"


# -- qemu.conf ---------------------------------------------------------------

GOOD_QEMU_CONF = ('# comment\nuser = "root"\ngroup = "root"\ndynamic_ownership = 0\n'
                  'security_driver = "none"\n')


def _qemu_conf(tmp_path, text):
    path = tmp_path / "qemu.conf"
    path.write_text(text)
    return str(path)


def test_qemu_conf_parse():
    assert host_checks.parse_qemu_conf(
        '#user = "x"\n user = "root" # who\ndynamic_ownership=0\nnamespaces = []\n') == \
        {"user": "root", "dynamic_ownership": 0, "namespaces": "[]"}


def test_qemu_conf_as_deployed_is_ok(tmp_path):
    r = one(host_checks.check_qemu_conf(_qemu_conf(tmp_path, GOOD_QEMU_CONF), "root",
                                        {"instances": str(tmp_path)}, lsm_markers={}))
    assert r.status == OK and "root:root" in r.what


def test_qemu_conf_dynamic_ownership_fails(tmp_path):
    path = _qemu_conf(tmp_path, GOOD_QEMU_CONF.replace("dynamic_ownership = 0",
                                                       "dynamic_ownership = 1"))
    r = one(host_checks.check_qemu_conf(path, "root", {}, lsm_markers={}))
    assert r.status == FAIL and r.what.startswith("dynamic_ownership = 1 in %s" % path)
    assert "chowns" in r.what
    assert 'dynamic_ownership = 0' in r.fix and "restart libvirtd" in r.fix


def test_qemu_conf_without_dynamic_ownership_line_means_on(tmp_path):
    path = _qemu_conf(tmp_path, 'user = "root"\ngroup = "root"\nsecurity_driver = "none"\n')
    assert one(host_checks.check_qemu_conf(path, "root", {}, lsm_markers={})).status == FAIL


def test_qemu_conf_security_driver(tmp_path):
    path = _qemu_conf(tmp_path, GOOD_QEMU_CONF.replace('"none"', '"apparmor"'))
    r = one(host_checks.check_qemu_conf(path, "root", {}, lsm_markers={}))
    assert r.status == FAIL and 'security_driver = "apparmor"' in r.what
    unset = _qemu_conf(tmp_path, GOOD_QEMU_CONF.replace('security_driver = "none"', ""))
    marker = tmp_path / "apparmor"
    marker.mkdir()
    r = one(host_checks.check_qemu_conf(unset, "root", {},
                                        lsm_markers={"apparmor": str(marker)}))
    assert r.status == WARN and "apparmor" in r.what


def test_qemu_conf_missing(tmp_path):
    r = one(host_checks.check_qemu_conf(str(tmp_path / "nope.conf"), "root", {}))
    assert r.status == FAIL and "cannot read" in r.what
    assert r.fix == "deploy/install-host.sh"


def test_qemu_conf_unknown_qemu_user(tmp_path):
    path = _qemu_conf(tmp_path, GOOD_QEMU_CONF.replace('user = "root"',
                                                       'user = "no-such-user-mn"'))
    r = one(host_checks.check_qemu_conf(path, "root", {}, lsm_markers={}))
    assert r.status == FAIL and "no-such-user-mn:root" in r.what and "does not exist" in r.what


# -- virtlogd ----------------------------------------------------------------

@pytest.fixture
def fake_proc(tmp_path):
    def make(*comms):
        proc = tmp_path / ("proc-%s" % "-".join(comms))
        for pid, comm in enumerate(comms, start=100):
            (proc / str(pid)).mkdir(parents=True)
            (proc / str(pid) / "comm").write_text(comm + "\n")
        proc.mkdir(exist_ok=True)
        return str(proc)
    return make


def test_virtlogd_not_running(tmp_path, fake_proc):
    sock = str(tmp_path / "virtlogd-sock")
    r = one(host_checks.check_virtlogd(sock, fake_proc("bash", "libvirtd")))
    assert r.status == FAIL and r.what.startswith("virtlogd is not running")
    assert r.fix.startswith("virtlogd -d")


def test_virtlogd_stale_socket(tmp_path, fake_proc):
    sock = str(tmp_path / "virtlogd-sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(sock)
    s.close()   # the file stays, nobody listens
    r = one(host_checks.check_virtlogd(sock, fake_proc("bash")))
    assert r.status == FAIL and "stale socket" in r.what and "Connection refused" in r.what
    assert r.fix.startswith("rm -f %s && virtlogd -d" % sock)


def test_virtlogd_listening(tmp_path, fake_proc):
    sock = str(tmp_path / "virtlogd-sock")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(sock)
        s.listen()
        assert one(host_checks.check_virtlogd(sock, fake_proc("virtlogd"))).status == OK
        assert one(host_checks.check_virtlogd(sock, fake_proc("sh"))).status == WARN


def test_virtlogd_process_without_socket(tmp_path, fake_proc):
    r = one(host_checks.check_virtlogd(str(tmp_path / "gone"), fake_proc("virtlogd")))
    assert r.status == FAIL and "socket" in r.what and "missing" in r.what


# -- dirs --------------------------------------------------------------------

def test_dir_ok_and_not_yet_created(tmp_path):
    me = userprobe.current_user()
    r = one(host_checks.check_dir("instances", "[compute] instances_path", str(tmp_path),
                                  me, 0.001))
    assert r.status == OK and "writable by %s" % me in r.what
    r = one(host_checks.check_dir("instances", "[compute] instances_path",
                                  str(tmp_path / "a" / "b"), me, 0.001))
    assert r.status == OK and "not created yet" in r.what
    assert os.listdir(tmp_path) == []   # the probe left nothing behind


def test_dir_free_space_below_threshold(tmp_path):
    r = one(host_checks.check_dir("image cache", "[compute] image_cache_path", str(tmp_path),
                                  userprobe.current_user(), 10 ** 9))
    assert r.status == FAIL and "below the 1000000000.0 GB threshold" in r.what
    assert "--min-free-gb" in r.fix


def test_dir_that_cannot_be_created(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    r = one(host_checks.check_dir("instances", "[compute] instances_path",
                                  str(blocker / "instances"), userprobe.current_user(), 0))
    assert r.status == FAIL and "cannot create it" in r.what and "Not a directory" in r.what
    assert r.fix.startswith("mkdir -p %s" % (blocker / "instances"))


# -- libvirt (test driver, no daemon) ----------------------------------------

def test_libvirt_socket_that_does_not_exist(tmp_path):
    uri = "qemu:///system?socket=%s" % (tmp_path / "libvirt-sock")
    r = one(libvirt_checks.check_libvirt(uri, userprobe.current_user()))
    assert r.status == FAIL and r.what.startswith("libvirtd is not running: no socket at %s"
                                                  % (tmp_path / "libvirt-sock"))
    assert r.fix.startswith("deploy/start-libvirt.sh")


def test_libvirt_test_driver_reachable():
    r = one(libvirt_checks.check_libvirt("test:///default", userprobe.current_user()))
    assert r.status == OK and "reachable by user" in r.what


@pytest.fixture
def test_conn():
    """test:///default keeps its state while a connection is open."""
    conn = libvirt.open("test:///default")
    yield conn
    conn.close()


NET_XML = "<network><name>%s</name><bridge name='virbr-dt%d'/><forward mode='nat'/>" \
          "<ip address='10.99.%d.1' netmask='255.255.255.0'/></network>"


def test_network_missing_inactive_and_not_autostarted(test_conn):
    r = one(libvirt_checks.check_network("test:///default", "mn-doctor-none"))
    assert r.status == FAIL and "not defined" in r.what
    assert r.fix == "deploy/setup-network.sh  (with MININOVA_NET_NAME=mn-doctor-none)"
    net = test_conn.networkDefineXML(NET_XML % ("mn-doctor", 1, 1))
    try:
        inactive, no_autostart = libvirt_checks.check_network("test:///default", "mn-doctor")
        assert inactive.status == FAIL and "inactive" in inactive.what
        assert inactive.fix.startswith("virsh -c test:///default net-start mn-doctor")
        assert no_autostart.status == WARN
        assert no_autostart.fix == "virsh -c test:///default net-autostart mn-doctor"
        net.create()
        net.setAutostart(1)
        r = one(libvirt_checks.check_network("test:///default", "mn-doctor"))
        assert r.status == OK and "active, autostart" in r.what
    finally:
        if net.isActive():
            net.destroy()
        net.undefine()


def test_network_empty_name_means_no_nic():
    assert one(libvirt_checks.check_network("test:///default", "")).status == OK


# -- clock -------------------------------------------------------------------

class _DateServer(http.server.ThreadingHTTPServer):
    """An API stand-in whose clock is ``offset`` seconds off ours."""
    offset = 0.0


class _DateHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def date_time_string(self, timestamp=None):
        return email.utils.formatdate(time.time() + self.server.offset, usegmt=True)

    def log_message(self, *args):
        pass


@pytest.fixture
def date_server():
    server = _DateServer(("127.0.0.1", 0), _DateHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("offset,status", [(0, OK), (-5, WARN), (8, WARN), (120, FAIL),
                                           (-3600, FAIL)])
def test_clock_skew(date_server, offset, status):
    date_server.offset = offset
    r = one(service_checks.check_clock_http("http://127.0.0.1:%d" % date_server.server_port))
    assert r.status == status, r
    if status != OK:
        assert ("behind" if offset > 0 else "ahead of") in r.what and "NTP" in r.fix
        assert abs(float(r.what.split("off by ")[1].split(" s")[0]) - abs(offset)) <= 1.5


def test_clock_controller_unreachable():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]   # bound, never listening: refused
        r = one(service_checks.check_clock_http("http://127.0.0.1:%d" % port))
    assert r.status == FAIL and "cannot reach the controller" in r.what
    assert "--controller-url" in r.fix


# -- the command -------------------------------------------------------------

def test_text_output_and_crashing_check():
    checks = [("a", lambda: [host_checks.ok("a", "fine")]),
              ("b", lambda: [host_checks.warn("b", "meh", "do x")])]
    results = command.run_checks(checks)
    assert command.render_text(results).splitlines() == [
        "ok    a: fine", "WARN  b: meh", "  fix: do x", "1 ok, 1 warning(s), 0 failure(s)"]
    crashing = command.run_checks([("c", lambda: 1 / 0)])
    assert crashing[0].status == FAIL and "ZeroDivisionError" in crashing[0].what


def test_command_compute_role_on_broken_config(conf, tmp_path, capsys, cpu):
    """The whole command on a config where everything is wrong; memory://
    transport and an unreachable controller; exit 1, JSON lists each problem."""
    conf.set_override("connection_uri", "qemu:///system?socket=%s" % (tmp_path / "nosock"),
                      group="libvirt")
    conf.set_override("transport_url", "memory://")
    conf.set_override("image_api_url", "http://127.0.0.1:1", group="compute")
    args = types.SimpleNamespace(role="compute", json=True, controller_url=None,
                                 compute_user=None, min_free_gb=0.0,
                                 qemu_conf=_qemu_conf(tmp_path, GOOD_QEMU_CONF))
    assert command.doctor_command(conf, args) == 1
    out = json.loads(capsys.readouterr().out)
    by_check = {}
    for r in out["results"]:
        by_check.setdefault(r["check"], []).append(r["status"])
    assert out["ok"] is False
    assert by_check["libvirt"] == [FAIL] and by_check["clock"] == [FAIL]
    assert by_check["rabbitmq"] == [WARN] and by_check["dirs"] == [OK, OK]
    assert by_check["qemu.conf"] == [OK]


def test_virtlogd_socket_follows_libvirt_socket():
    assert command._virtlogd_socket("qemu:///system") == "/run/libvirt/virtlogd-sock"
    assert command._virtlogd_socket("qemu:///system?socket=/lab/h1/run/libvirt-sock") == \
        "/lab/h1/run/virtlogd-sock"


def test_manage_parses_doctor():
    from nova_manage import cmd as manage
    args = manage._parser().parse_args(["doctor", "--role", "compute", "--json",
                                        "--min-free-gb", "3"])
    assert args.fn is command.doctor_command and args.role == "compute" and args.min_free_gb == 3


def test_compute_user_is_the_running_computes():
    marker = "mn-doctor-marker-%d" % os.getpid()
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", marker])
    try:
        assert wait_for(lambda: userprobe.process_user([marker]), 10,
                        what="the marked process") == userprobe.current_user()
    finally:
        proc.kill()
        proc.wait()
    assert userprobe.process_user(["no-such-marker-%d" % os.getpid()]) is None
