"""The role scripts the Vagrantfile runs -- deploy/controller.sh and
deploy/compute.sh -- for a controller and two compute hosts on this machine:
the controller in the root network namespace, each compute host in a sim host
(its own network namespace and private libvirtd, deploy/lab/sim-host.sh). The
controller's address is the first sim host's gateway (10.77.A.1): both compute
hosts reach it over their veth, the second one routed through its own gateway.
RabbitMQ listens on 127.0.0.1 only here, so sim-host.sh's forwarder makes it
reachable at that address, as a controller's RabbitMQ would be on a real network.

The controller gets a private database, vhost, RabbitMQ user and API port
(the machine's RabbitMQ/PostgreSQL are shared), all dropped afterwards; the
management plugin is enabled online if it is not yet (no broker restart). apt is
not skipped: on a prepared host the package steps make no apt call.
Also here: the Vagrantfile's syntax (ruby -c) and that it runs only these
scripts with options they accept; the systemd units (systemd-analyze verify).
"""
import concurrent.futures
import os
import re
import shutil
import subprocess
import sys
import time
import uuid

import pytest
import requests

from mininova_lab.sim_host import SimHost
from mininova_lab import services
from tests import prerequisites
from mininova_lab.stack import ROOT, free_port, qemu_img_create
from mininova_lab.waiting import wait_for

DEPLOY = os.path.join(ROOT, "deploy")
VENV = os.path.dirname(os.path.dirname(sys.executable))
TIMINGS = {}

pytestmark = pytest.mark.real_services("rabbitmq", "postgresql", "libvirt", "http")


@pytest.fixture(autouse=True)
def root():
    prerequisites.require_root("the role scripts")


def run_script(argv, what, netns=None, timeout=300):
    """Run a role script (inside ``netns`` if given); its stderr; fail on rc != 0."""
    cmd = ["bash", *argv]
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          stdin=subprocess.DEVNULL)
    TIMINGS[what] = round(time.monotonic() - t0, 1)
    assert proc.returncode == 0, "%s failed (%d):\n%s\n%s" % (
        what, proc.returncode, proc.stdout[-3000:], proc.stderr[-6000:])
    return proc.stdout, proc.stderr


def processes(binary, conf):
    """pids of ``binary --config-file conf`` processes (not zombies)."""
    needle = "%s --config-file %s " % (binary, conf)
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open("/proc/%s/stat" % entry) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in cmdline and state != "Z":
            pids.append(int(entry))
    return pids


class Lab:
    """Names and paths of one run; the scripts' arguments."""

    def __init__(self, workdir):
        self.tag = "dr" + uuid.uuid4().hex[:6]
        self.workdir = str(workdir)
        self.db = "mininova_" + self.tag
        self.vhost = "mininova-" + self.tag
        self.rabbit_user = "mininova-" + self.tag
        self.api_port = free_port()
        self.controller_state = os.path.join(self.workdir, "controller")
        self.credentials = os.path.join(self.workdir, "credentials")
        self.sims = [SimHost("c%d-%s" % (i, self.tag), base_dir=os.path.join(self.workdir, "lab"),
                             forward=(services.rabbit_port(),))
                     for i in (1, 2)]
        self.image = os.path.join(self.workdir, "blank.qcow2")
        self.address = None

    def controller_argv(self):
        return [os.path.join(DEPLOY, "controller.sh"), "--address", self.address,
                "--credentials", self.credentials, "--state-dir", self.controller_state,
                "--api-port", str(self.api_port), "--db-name", self.db, "--vhost", self.vhost,
                "--rabbit-user", self.rabbit_user, "--host", "ctl-" + self.tag, "--venv", VENV,
                "--image", "blank=" + self.image,
                *[arg for sim in self.sims for arg in ("--compute-host", sim.name)]]

    def compute_state(self, sim):
        return os.path.join(self.workdir, sim.name)

    def compute_argv(self, sim):
        return [os.path.join(DEPLOY, "compute.sh"), "--credentials-file", self.host_env(sim),
                "--controller", self.address, "--host", sim.name,
                "--libvirt-uri", sim.libvirt_uri, "--virt-type", "qemu",
                "--state-dir", self.compute_state(sim), "--venv", VENV]

    @property
    def compute_env(self):
        return os.path.join(self.controller_state, "compute.env")

    def host_env(self, sim):
        """compute.env plus the sim's own RabbitMQ account."""
        return os.path.join(self.controller_state, "compute-%s.env" % sim.name)

    @property
    def broker_users(self):
        """The role accounts controller.sh made (README, Broker accounts)."""
        return ["%s.%s" % (self.rabbit_user, role) for role in
                ("api", "scheduler", "conductor", "manage")] + [
            "%s.compute.%s" % (self.rabbit_user, sim.name) for sim in self.sims]

    @property
    def url(self):
        return "http://%s:%d" % (self.address, self.api_port)

    def token(self, user="admin"):
        with open(os.path.join(self.controller_state, "creds", user + ".token")) as f:
            return f.read().strip()


def run_computes(lab, which):
    """Both compute scripts at once, each in its sim host's netns."""
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(run_script, lab.compute_argv(sim),
                               "compute.sh %s (%s run)" % (sim.name, which), netns=sim.netns)
                   for sim in lab.sims]
        return [f.result() for f in futures]


def teardown(lab):
    for sim in lab.sims:
        subprocess.run(["bash", os.path.join(DEPLOY, "compute.sh"), "--stop", "--state-dir",
                        lab.compute_state(sim), "--venv", VENV], capture_output=True)
    subprocess.run(["bash", os.path.join(DEPLOY, "controller.sh"), "--stop", "--state-dir",
                    lab.controller_state, "--venv", VENV], capture_output=True)
    for sim in lab.sims:
        try:
            sim.down()
        except Exception as e:  # keep tearing down the rest
            print("sim-host down %s: %s" % (sim.name, e))
    services.pg_superuser('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % lab.db)
    services.pg_superuser('DROP ROLE IF EXISTS "%s"' % lab.db)
    for args in (["delete_vhost", lab.vhost], ["delete_user", lab.rabbit_user]):
        services.rabbitmqctl(*args, check=False)
    services.delete_users(lab.broker_users)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    lab = Lab(tmp_path_factory.mktemp("roles"))
    try:
        qemu_img_create(lab.image, "1G")
        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda s: s.up(), lab.sims))
        TIMINGS["2 sim hosts up"] = round(time.monotonic() - t0, 1)
        lab.address = lab.sims[0].gateway_ip
        run_script(lab.controller_argv(), "controller.sh (first run)")
        run_computes(lab, "first")
        yield lab
    finally:
        teardown(lab)
        print("\ntimings (s):", TIMINGS)


def test_controller_and_two_computes_up(lab):
    http = requests.Session()
    http.headers["X-Auth-Token"] = lab.token()
    listed = http.get(lab.url + "/v1/services", timeout=10).json()["services"]
    up = {(s["binary"], s["host"]) for s in listed if s["state"] == "up"}
    assert up == {("mininova-scheduler", "ctl-" + lab.tag),
                  ("mininova-conductor", "ctl-" + lab.tag)} | {
        ("mininova-compute", sim.name) for sim in lab.sims}
    # Each compute reaches RabbitMQ and the API at the controller's address,
    # the second one through another gateway than its own.
    for sim in lab.sims:
        with open(os.path.join(lab.compute_state(sim), "mininova.conf")) as f:
            conf = f.read()
        assert "@%s:%d/%s\n" % (lab.address, services.rabbit_port(), lab.vhost) in conf
        # with its own broker account
        assert "transport_url = rabbit://%s.compute.%s:" % (lab.rabbit_user, sim.name) in conf
        assert "image_api_url = %s\n" % lab.url in conf
    assert lab.sims[1].gateway_ip != lab.address
    # compute.sh set up the guests' NAT network on the host's own libvirtd.
    assert "mininova" in lab.sims[0].virsh("net-list", "--name").stdout
    # compute.env is for root only: it holds a token; compute-NAME.env also a password.
    assert os.stat(lab.compute_env).st_mode & 0o077 == 0
    assert all(os.stat(lab.host_env(sim)).st_mode & 0o077 == 0 for sim in lab.sims)
    assert "RABBIT_PASSWORD" not in open(lab.compute_env).read()
    # RabbitMQ's management UI takes mininova's own RabbitMQ login.
    creds = dict(line.split("=", 1) for line in open(lab.credentials).read().split())
    r = requests.get("http://127.0.0.1:%d/api/whoami" % services.rabbit_management_port(),
                     timeout=10,
                     auth=(creds["RABBIT_USER"], creds["RABBIT_PASSWORD"]))
    assert r.status_code == 200 and "management" in r.json()["tags"], r.text


def test_second_runs_change_nothing(lab):
    files = [os.path.join(lab.controller_state, n) for n in ("mininova.conf", "compute.env",
                                                              "adminrc", "creds/admin.token")]
    files += [lab.host_env(s) for s in lab.sims]
    files += [os.path.join(lab.compute_state(s), "mininova.conf") for s in lab.sims]
    before = {f: os.stat(f).st_mtime_ns for f in files}
    daemons = [(binary, os.path.join(lab.controller_state, "mininova.conf"))
               for binary in ("mininova-api", "mininova-scheduler", "mininova-conductor")]
    daemons += [("mininova-compute", os.path.join(lab.compute_state(s), "mininova.conf"))
                for s in lab.sims]
    pids = {d: processes(*d) for d in daemons}
    assert all(len(p) == 1 for p in pids.values()), pids

    _, err = run_script(lab.controller_argv(), "controller.sh (second run)")
    assert "mininova-api already running" in err and "wrote" not in err and "created" not in err
    for _, err in run_computes(lab, "second"):
        assert "already running" in err and "wrote" not in err

    assert {f: os.stat(f).st_mtime_ns for f in files} == before
    assert {d: processes(*d) for d in daemons} == pids


def test_vm_goes_active_on_a_compute_host_and_is_deleted(lab):
    http = requests.Session()
    http.headers["X-Auth-Token"] = lab.token("demo")
    t0 = time.monotonic()
    r = http.post(lab.url + "/v1/vms", json={"name": "lab-vm", "image": "blank",
                                             "flavor": "m1.tiny"}, timeout=10)
    assert r.status_code == 202, r.text
    vm_id = r.json()["vm"]["id"]

    def active():
        vm = http.get(lab.url + "/v1/vms/" + vm_id, timeout=10).json()["vm"]
        assert vm["status"] != "ERROR", vm["fault"]
        return vm if vm["status"] == "ACTIVE" else None
    vm = wait_for(active, 90, interval=0.2, what="the VM to be ACTIVE")
    TIMINGS["POST -> ACTIVE"] = round(time.monotonic() - t0, 1)
    sim = {s.name: s for s in lab.sims}[vm["host"]]
    domain = "mininova-" + vm_id
    assert domain in sim.virsh("list", "--name").stdout

    assert http.delete(lab.url + "/v1/vms/" + vm_id, timeout=10).status_code == 202
    wait_for(lambda: http.get(lab.url + "/v1/vms/" + vm_id, timeout=10).status_code == 404,
             60, interval=0.2, what="the VM to be gone")
    assert domain not in sim.virsh("list", "--all", "--name").stdout


def test_a_changed_config_restarts_the_controller_daemons(lab):
    conf = os.path.join(lab.controller_state, "mininova.conf")
    old = {b: processes(b, conf)
           for b in ("mininova-api", "mininova-scheduler", "mininova-conductor")}
    _, err = run_script(lab.controller_argv() + ["--api-listen", "0.0.0.0"],
                        "controller.sh (changed config)")
    assert "wrote %s" % conf in err and "listen = 0.0.0.0\n" in open(conf).read()
    new = {b: processes(b, conf) for b in old}
    assert all(len(p) == 1 for p in new.values()) and all(
        set(new[b]).isdisjoint(old[b]) for b in old), (old, new)
    for name in ("scheduler", "conductor"):
        log = os.path.join(lab.controller_state, "logs", name + ".log")
        wait_for(lambda: open(log).read().count("mininova-%s started" % name) == 2, 30,
                 what="the new %s to start" % name)
    # the API (new process) answers, the scheduler and the conductor are up
    services = requests.get(lab.url + "/v1/services", headers={"X-Auth-Token": lab.token()},
                            timeout=10).json()["services"]
    assert {(s["binary"], s["state"]) for s in services if s["host"] == "ctl-" + lab.tag} == {
        ("mininova-scheduler", "up"), ("mininova-conductor", "up")}


# -- the Vagrantfile and the units (no lab needed) --------------------------------------

def script_options(script):
    """The long options a role script's argument parser accepts."""
    with open(os.path.join(DEPLOY, script)) as f:
        return set(re.findall(r"^\s+(--[a-z-]+)(?:\|[^)]*)?\)", f.read(), re.M))


def vagrant_commands():
    """The commands of the Vagrantfile's shell provisioners, as they run."""
    with open(os.path.join(ROOT, "Vagrantfile")) as f:
        text = f.read()
    consts = dict(re.findall(r'^([A-Z_]+) = "([^"]*)"', text, re.M))
    commands = []
    for m in re.finditer(r'inline:\s*((?:"[^"]*"\s*\\?\s*)+)', text):
        cmd = "".join(re.findall(r'"([^"]*)"', m.group(1)))
        cmd = re.sub(r"#\{([A-Z_]+)\}", lambda c: consts[c.group(1)], cmd)
        cmd = re.sub(r"#\{(\w+)\}", "NAME", cmd)  # loop variables
        commands.append(cmd)
    return text, commands


@pytest.mark.real_services()
def test_vagrantfile_only_runs_role_scripts_with_known_options():
    text, commands = vagrant_commands()
    assert len(commands) == 3, commands      # tiny image + controller, compute (per host)
    scripts = set()
    for cmd in commands:
        argv = cmd.split()
        assert argv[0] == "bash" and argv[1].startswith("/vagrant/deploy/"), cmd
        script = argv[1][len("/vagrant/deploy/"):]
        assert os.path.exists(os.path.join(DEPLOY, script)), script
        scripts.add(script)
        if script in ("controller.sh", "compute.sh"):
            unknown = {a for a in argv[2:] if a.startswith("--")} - script_options(script)
            assert not unknown, "%s: options it does not accept: %s" % (script, unknown)
    assert scripts == {"build-tiny-image.sh", "controller.sh", "compute.sh"}
    # no provisioning of its own: no other provisioner kinds, no inline logic
    assert re.findall(r'provision\s+"[\w-]+",\s*type:\s*"(\w+)"', text) == ["shell"] * 3


@pytest.mark.real_services()
def test_vagrantfile_syntax():
    prerequisites.require(shutil.which("ruby"), "ruby for `ruby -wc Vagrantfile` "
                          "(deploy/install-test-tools.sh installs it)")
    proc = subprocess.run(["ruby", "-wc", os.path.join(ROOT, "Vagrantfile")],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "Syntax OK", proc.stderr
    assert proc.stderr == "", proc.stderr      # -w: no warnings either


@pytest.mark.real_services()
def test_systemd_units_verify_as_the_scripts_install_them(tmp_path):
    """The scripts render the units with the host's venv and config; those
    rendered units must pass `systemd-analyze verify`."""
    prerequisites.require(shutil.which("systemd-analyze"), "systemd-analyze (package systemd; "
                          "deploy/install-test-tools.sh installs it)")
    conf = tmp_path / "mininova.conf"
    conf.write_text("[DEFAULT]\n")
    units = []
    for name in ("api", "scheduler", "conductor", "compute"):
        render = subprocess.run(
            ["bash", "-c", '. "$1/role-common.sh"; VENV=$2 CONF=$3 render_unit "$4"', "render",
             DEPLOY, VENV, str(conf), name], capture_output=True, text=True, check=True)
        unit = tmp_path / ("mininova-%s.service" % name)
        unit.write_text(render.stdout)
        text = render.stdout
        assert "ExecStart=%s/bin/mininova-%s --config-file %s\n" % (VENV, name, conf) in text
        assert "Restart=on-failure" in text
        after = re.search(r"^After=(.*)$", text, re.M).group(1).split()
        assert "network-online.target" in after
        assert ({"libvirtd.service"} if name == "compute"
                else {"rabbitmq-server.service", "postgresql.service"}) <= set(after)
        units.append(str(unit))
    render = subprocess.run(
        ["bash", "-c", '. "$1/role-common.sh"; VENV=$2 CONF=$3 render_unit haproxy', "render",
         DEPLOY, VENV, str(conf)], capture_output=True, text=True, check=True)
    assert "ExecStart=/usr/sbin/haproxy -Ws -f %s/haproxy.cfg\n" % tmp_path in render.stdout
    (tmp_path / "haproxy.cfg").write_text(subprocess.run(
        ["bash", os.path.join(DEPLOY, "haproxy-cfg.sh"), "--bind", "127.0.0.1:8780",
         "api1=127.0.0.1:8774"], capture_output=True, text=True, check=True).stdout)
    (tmp_path / "mininova-haproxy.service").write_text(render.stdout)
    units.append(str(tmp_path / "mininova-haproxy.service"))
    proc = subprocess.run(["systemd-analyze", "verify", *units], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "mininova" not in proc.stderr, proc.stderr   # no warnings about our units
