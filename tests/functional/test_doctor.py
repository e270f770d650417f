"""``mininova-manage doctor`` against the real services, each broken on purpose
(wrong credentials, ports nobody listens on, a non-root user compute might run
as), and once on this machine as it is set up. Needs root (useradd, probes as
another user), RabbitMQ, PostgreSQL and libvirtd."""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid

import pytest

from nova_manage.doctor import FAIL, OK, WARN, host_checks, libvirt_checks, service_checks
from mininova_lab import services
from tests import prerequisites
from mininova_lab.stack import ROOT, Stack, free_port

pytestmark = pytest.mark.real_services("libvirt")


@pytest.fixture(autouse=True)
def root():
    prerequisites.require_root("useradd, probes as another user")


def one(results):
    assert len(results) == 1, results
    return results[0]


# -- RabbitMQ ----------------------------------------------------------------

@pytest.mark.real_services("rabbitmq")
def test_rabbitmq_ok_wrong_password_vhost_and_unreachable():
    user, port = services.rabbit_user(), services.rabbit_port()
    r = one(service_checks.check_rabbitmq(services.rabbit_url()))
    assert r.status == OK and "as %s" % user in r.what
    r = one(service_checks.check_rabbitmq(services.rabbit_url(password="wrong")))
    assert r.status == FAIL
    assert r.what == "authentication failed for user %s at 127.0.0.1:%d" % (user, port)
    assert "rabbitmqctl change_password %s" % user in r.fix
    r = one(service_checks.check_rabbitmq(services.rabbit_url("no-vh-doctor")))
    assert r.status == FAIL and "may not use vhost no-vh-doctor" in r.what
    assert "rabbitmqctl add_vhost no-vh-doctor" in r.fix
    port = free_port()
    r = one(service_checks.check_rabbitmq("rabbit://guest:secret@127.0.0.1:%d/" % port,
                                          timeout=2))
    assert r.status == FAIL and r.what.startswith("unreachable at 127.0.0.1:%d" % port)
    assert "secret" not in r.what and ":***@" in r.what


@pytest.mark.real_services("rabbitmq")
def test_rabbitmq_failover_list_checks_each_broker():
    url, port = services.rabbit_url(), free_port()
    netloc, _, vhost = url.split("://", 1)[1].partition("/")
    credentials = netloc.rpartition("@")[0]
    results = service_checks.check_rabbitmq(
        "rabbit://%s,%s@127.0.0.1:%d/%s" % (netloc, credentials, port, vhost), timeout=2)
    assert [r.status for r in results] == [OK, FAIL]
    assert results[1].what.startswith("unreachable at 127.0.0.1:%d" % port)
    assert ":***@" in results[1].what
    r = one(service_checks.check_rabbitmq("rabbit://u:p@h1,,h2/"))
    assert r.status == FAIL and "bad [DEFAULT] transport_url" in r.what


# -- PostgreSQL --------------------------------------------------------------

@pytest.mark.real_services("postgresql")
def test_database_ok_and_clock(pg_db):
    url = str(pg_db.engine.url.render_as_string(hide_password=False))
    r = one(service_checks.check_database(url))
    assert r.status == OK and "schema at" in r.what
    assert one(service_checks.check_clock_database(url)).status == OK


@pytest.mark.real_services("postgresql")
def test_database_unknown_role_missing_db_and_unreachable():
    # An unknown role fails under every authentication method (trust included).
    r = one(service_checks.check_database(
        "postgresql+psycopg2://no_such_role_mn:pw@127.0.0.1/postgres"))
    assert r.status == FAIL
    assert r.what.startswith("authentication failed for user no_such_role_mn")
    assert "pw@" not in r.what and "ALTER ROLE no_such_role_mn" in r.fix
    r = one(service_checks.check_database(services.db_url("no_db_mn")))
    assert r.status == FAIL and 'database "no_db_mn" does not exist' in r.what
    assert "mininova-manage db sync" in r.fix
    port = free_port()
    r = one(service_checks.check_database(
        "postgresql+psycopg2://mininova:pw@127.0.0.1:%d/x" % port))
    assert r.status == FAIL and r.what.startswith("unreachable:") and str(port) in r.what


@pytest.mark.real_services("postgresql")
def test_database_schema_behind():
    name = "mininova_doc_" + uuid.uuid4().hex[:8]
    services.create_database(name)
    try:
        r = one(service_checks.check_database(services.db_url(name)))
        assert r.status == FAIL and r.what.startswith("schema at revision None")
        assert r.fix == "mininova-manage db sync"
    finally:
        services.drop_database(name)


# -- a non-root compute user -------------------------------------------------

@pytest.fixture
def system_user():
    """A throwaway system user (no home, no login), removed afterwards."""
    name = "mndoc" + uuid.uuid4().hex[:6]
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                    "--user-group", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["userdel", name], check=False)
        subprocess.run(["groupdel", name], check=False, stderr=subprocess.DEVNULL)


@pytest.fixture
def root_dir():
    """A root-owned 0755 dir outside pytest's 0700 tmp dirs: others may look, not write."""
    path = tempfile.mkdtemp(prefix="mn-doctor-")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_libvirt_system_refuses_user_not_in_libvirt_group(system_user):
    r = one(libvirt_checks.check_libvirt("qemu:///system", system_user))
    assert r.status == FAIL
    # socket mode 0770 group libvirt -> permission denied; 0777 + polkit -> refused
    assert ("permission denied on /var/run/libvirt/libvirt-sock for user %s" % system_user
            in r.what) or r.what.startswith("libvirtd refused user %s" % system_user)
    assert r.fix.startswith("usermod -aG libvirt %s" % system_user)


def test_libvirt_socket_permission_denied(system_user, root_dir):
    private = os.path.join(root_dir, "private")
    os.mkdir(private, 0o700)
    sock_path = os.path.join(private, "libvirt-sock")
    uri = "qemu:///system?socket=" + sock_path
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(sock_path)
        listener.listen()
        r = one(libvirt_checks.check_libvirt(uri, system_user))
        assert r.status == FAIL
        assert r.what == "permission denied on %s for user %s" % (sock_path, system_user)
        assert r.fix.startswith("usermod -aG libvirt %s &&" % system_user)
        assert 'unix_sock_group = "libvirt"' in r.fix
        # in the group already: then it is the socket's mode/group (or a stale process)
        subprocess.run(["usermod", "-aG", "libvirt", system_user], check=True)
        r = one(libvirt_checks.check_libvirt(uri, system_user))
        assert r.status == FAIL
        assert r.fix.startswith("%s is in group libvirt already" % system_user)
        assert 'unix_sock_group = "libvirt"' in r.fix


def test_dir_not_writable_by_compute_user(system_user, root_dir):
    r = one(host_checks.check_dir("instances", "[compute] instances_path", root_dir,
                                  system_user, 0))
    assert r.status == FAIL
    assert r.what == ("instances dir %s ([compute] instances_path) is not writable by user "
                      "%s: Permission denied" % (root_dir, system_user))
    assert r.fix.startswith("chown -R %s %s" % (system_user, root_dir))
    shutil.chown(root_dir, user=system_user)
    r = one(host_checks.check_dir("instances", "[compute] instances_path", root_dir,
                                  system_user, 0))
    assert r.status == OK and os.listdir(root_dir) == []


def test_qemu_conf_non_root_qemu_user(system_user, root_dir, tmp_path):
    os.chmod(root_dir, 0o700)
    conf = tmp_path / "qemu.conf"
    conf.write_text('user = "%s"\ngroup = "%s"\ndynamic_ownership = 0\n'
                    'security_driver = "none"\n' % (system_user, system_user))
    results = host_checks.check_qemu_conf(str(conf), "root", {"instances": root_dir})
    assert [r.status for r in results] == [FAIL, FAIL]
    assert results[0].what == ("QEMU runs as %s:%s (qemu.conf user/group) and cannot write %s "
                               "(instances dir)" % (system_user, system_user, root_dir))
    assert "but compute as root with dynamic_ownership = 0" in results[1].what
    assert 'user = "root", group = "root"' in results[0].fix


# -- libvirt network on the real libvirtd (a throwaway one, never `mininova`) --

def test_network_inactive_on_real_libvirtd():
    name = "mn-doc-" + uuid.uuid4().hex[:6]
    xml = ("<network><name>%s</name><bridge name='virbr-%s'/><forward mode='nat'/>"
           "<ip address='10.251.%d.1' netmask='255.255.255.0'/></network>"
           % (name, name[-6:], int(name[-2:], 16)))
    with tempfile.NamedTemporaryFile("w", suffix=".xml") as f:
        f.write(xml)
        f.flush()
        subprocess.run(["virsh", "-q", "-c", "qemu:///system", "net-define", f.name],
                       check=True, stdout=subprocess.DEVNULL)
    try:   # defined, never started: no bridge, no iptables rules
        inactive, no_autostart = libvirt_checks.check_network("qemu:///system", name)
        assert inactive.status == FAIL
        assert inactive.what == ("network %s is defined but inactive: every spawn fails "
                                 "(its bridge is down)" % name)
        assert inactive.fix.startswith("virsh -c qemu:///system net-start %s" % name)
        assert no_autostart.status == WARN
    finally:
        subprocess.run(["virsh", "-q", "-c", "qemu:///system", "net-undefine", name],
                       check=True, stdout=subprocess.DEVNULL)


# -- this machine as it is set up --------------------------------------------

@pytest.fixture(scope="module")
def api_stack(tmp_path_factory):
    """The API of a private stack (no scheduler, no compute): the controller
    the clock is compared with, a migrated database, a RabbitMQ vhost."""
    s = Stack(tmp_path_factory.mktemp("doctor")).start(schedulers=0, compute=False)
    try:
        yield s
    finally:
        s.stop()


def _doctor(stack, *args):
    return subprocess.run([sys.executable, "-m", "nova_manage.cmd", "--config-file",
                           stack.conf_path, "doctor", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.real_services("rabbitmq", "postgresql", "libvirt", "http")
def test_doctor_on_this_host_only_kvm_may_warn(api_stack):
    proc = _doctor(api_stack, "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] is True and report["role"] == "all"
    checks = {r["check"] for r in report["results"]}
    assert checks == {"kvm", "libvirt", "qemu.conf", "virtlogd", "network", "dirs",
                      "rabbitmq", "clock", "database"}
    for r in report["results"]:
        if r["check"] == "kvm" and r["status"] == WARN:
            assert r["what"].startswith("TCG in use because"), r   # no vmx/svm here
            continue
        assert r["status"] == OK, r


@pytest.mark.real_services("rabbitmq", "postgresql", "libvirt", "http")
def test_doctor_text_output_and_exit_status(api_stack):
    proc = _doctor(api_stack, "--role", "compute")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1].endswith("0 failure(s)")
    assert any(line.startswith("ok    network: network mininova active") for line in lines)
    port = free_port()
    proc = _doctor(api_stack, "--role", "compute", "--controller-url",
                   "http://127.0.0.1:%d" % port)
    assert proc.returncode == 1
    assert "FAIL  clock: cannot reach the controller at http://127.0.0.1:%d/" % port \
        in proc.stdout
    assert "  fix: start mininova-api there" in proc.stdout
