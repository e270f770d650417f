"""A real mininova stack for end-to-end tests: the three daemons as processes,
against the real RabbitMQ (a private vhost), PostgreSQL (a private database),
both as mininova's own accounts (mininova_lab/services.py), and libvirtd. Several
stacks can run at once without seeing each other.

With ``broker_accounts`` (or MININOVA_BROKER_ACCOUNTS=1) each daemon talks to
RabbitMQ with its own least-privilege account (README "Broker accounts"):
``<tag>.api``, ``.scheduler``, ``.conductor``, ``.manage`` (the config's
[DEFAULT], for mininova-manage) and ``<tag>.compute.<host>`` per compute host."""
import os
import re
import socket
import subprocess
import sys
import uuid

import requests

from mininova_lab import services
from mininova_lab.waiting import wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class VMError(Exception):
    """A VM ended in ERROR while a test waited for another status: fail now."""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    def __init__(self, workdir, compute_driver="libvirt", extra_conf="", network="mininova",
                 debug=True, broker=services, database=services, broker_accounts=None):
        """``broker``/``database``: where the vhost and the database are made
        (mininova_lab/services.py: the shared ones; or a RabbitNode/PgCluster of
        mininova_lab/private_services.py). ``broker_accounts``: see above
        (None: MININOVA_BROKER_ACCOUNTS)."""
        self.tag = "e2e" + uuid.uuid4().hex[:8]
        self.broker, self.database = broker, database
        self.workdir = str(workdir)
        self.host = "host-" + self.tag
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        # Prometheus endpoints (GET /metrics) of the first scheduler, conductor and compute.
        self.metrics_urls = {"api": self.url + "/metrics"}
        self.metrics_ports = {"scheduler": free_port(), "conductor": free_port(),
                              "compute": free_port()}
        for name, port in self.metrics_ports.items():
            self.metrics_urls[name] = "http://127.0.0.1:%d/metrics" % port
        self.db_name = "mininova_" + self.tag
        self.db_url = database.db_url(self.db_name)
        self.vhost = "mininova-" + self.tag
        self.transport_url = broker.rabbit_url(self.vhost)
        self.instances_path = os.path.join(self.workdir, "instances")
        self.cache_path = os.path.join(self.workdir, "_base")
        self.conf_path = os.path.join(self.workdir, "mininova.conf")
        self.logs = os.path.join(self.workdir, "logs")
        self.compute_driver = compute_driver
        self.network = network
        self.debug = debug
        self.extra_conf = extra_conf
        self.procs = {}
        self.haproxy = None
        self.http = requests.Session()
        if broker_accounts is None:
            broker_accounts = os.environ.get("MININOVA_BROKER_ACCOUNTS") == "1"
        self.broker_passwords = {} if broker_accounts else None  # broker user -> password

    # -- set-up -----------------------------------------------------------
    def start(self, schedulers=1, compute=True, conductors=1, apis=1):
        """``apis`` > 1: more API processes on ports of their own
        (``api_urls``), HAProxy in front of them all (``haproxy``), and
        ``url`` is HAProxy's."""
        self.configure()
        self.start_daemon("api")
        self.api_urls = {"api": self.url}
        for i in range(2, apis + 1):
            self.start_extra_api("api%d" % i)
        for i in range(schedulers):
            self.start_daemon("scheduler" if i == 0 else "scheduler%d" % i, module="scheduler")
        for i in range(conductors):
            self.start_daemon("conductor" if i == 0 else "conductor%d" % i, module="conductor")
        if compute:
            self.start_daemon("compute")
        wait_for(self._api_up, 30, what="the API")
        if apis > 1:
            from mininova_lab.haproxy import HAProxy
            self.haproxy = HAProxy(os.path.join(self.workdir, "haproxy"), free_port(), {
                name: url.split("//", 1)[1] for name, url in self.api_urls.items()}).start()
            self.url = self.haproxy.url
        if compute:
            wait_for(self._compute_up, 30, what="compute heartbeat")
        return self

    def start_extra_api(self, name, api_conf=""):
        """Another API on a port of its own (``api_urls[name]``); ``api_conf``:
        more [api] lines (e.g. ``workers = 2``)."""
        port = free_port()
        conf = os.path.join(self.workdir, name + ".conf")
        with open(conf, "w") as f:
            f.write("[api]\nport = %d\n%s\n" % (port, api_conf))
        self.start_daemon(name, module="api", extra_args=("--config-file", conf))
        self.api_urls[name] = "http://127.0.0.1:%d" % port

    def configure(self):
        """The database, the vhost, the config file and the accounts: all
        but the daemons."""
        os.makedirs(self.logs, exist_ok=True)
        self.database.create_database(self.db_name)
        self.broker.add_vhost(self.vhost)
        urls = {}
        if self.broker_passwords is not None:
            users = {role: "%s.%s" % (self.tag, role)
                     for role in ("api", "scheduler", "conductor", "manage")}
            users["compute"] = "%s.compute.%s" % (self.tag, self.host)
            self.add_broker_accounts(users.values())
            urls = {role: self.broker_url(user) for role, user in users.items()}
        # It holds passwords and tokens: readable by the owner only.
        with open(os.open(self.conf_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(f"""[DEFAULT]
host = {self.host}
state_path = {self.workdir}
transport_url = {urls.get("manage", self.transport_url)}
debug = {str(self.debug).lower()}

[api]
port = {self.port}
transport_url = {urls.get("api", "")}

[database]
connection = {self.db_url}

[scheduler]
metrics_host = 127.0.0.1
metrics_port = {self.metrics_ports["scheduler"]}
transport_url = {urls.get("scheduler", "")}

[conductor]
metrics_host = 127.0.0.1
metrics_port = {self.metrics_ports["conductor"]}
transport_url = {urls.get("conductor", "")}

[compute]
transport_url = {urls.get("compute", "")}
instances_path = {self.instances_path}
image_cache_path = {self.cache_path}
compute_driver = {self.compute_driver}
heartbeat_interval = 2
shutdown_timeout = 5
sync_interval = 5
image_api_url = {self.url}
network_name = {self.network}
metrics_host = 127.0.0.1
metrics_port = {self.metrics_ports["compute"]}

[libvirt]
virt_type = auto
{self.extra_conf}
""")
        self.manage("db", "sync")
        self.setup_credentials()

    def _broker_ctl(self):
        """None for the shared broker (services), else the private one's rabbitmqctl."""
        if self.broker is services:
            return None
        return getattr(self.broker, "ctl", None) or self.broker.rabbitmqctl

    def add_broker_accounts(self, users):
        """Role accounts ``users`` (names as common.rpc.policy reads them) on
        this stack's vhost, with new passwords, and the topology they may not
        declare themselves."""
        for user in users:
            self.broker_passwords[user] = uuid.uuid4().hex
        quorum = re.search(r"^\s*rabbit_quorum_queue\s*=\s*true", self.extra_conf, re.M | re.I)
        limit = re.search(r"^\s*rabbit_quorum_delivery_limit\s*=\s*(\d+)", self.extra_conf,
                          re.M)
        services.add_accounts(self.vhost, self.broker_passwords, quorum=bool(quorum),
                              delivery_limit=int(limit.group(1)) if limit else None,
                              ctl=self._broker_ctl())

    def broker_url(self, user, host=None):
        """The stack's transport url as broker ``user`` (one of its accounts);
        ``host``: reached at that address (same port) instead."""
        scheme, _, rest = self.transport_url.partition("://")
        netlocs, slash, path = rest.partition("/")
        password = self.broker_passwords[user]
        hosts = []
        for netloc in netlocs.split(","):
            address = netloc.rpartition("@")[2]
            if host is not None:
                address = "%s:%s" % (host, address.rpartition(":")[2])
            hosts.append(user + ":" + password + "@" + address)
        return scheme + "://" + ",".join(hosts) + slash + path

    def setup_credentials(self):
        """An admin (whose token this stack's HTTP session carries), unlimited
        quotas for its project, and a service token for the computes' image
        downloads, written into the config."""
        self.manage("project", "create", "admin")
        self.manage("quota", "set", "admin", "--instances", "-1", "--cores", "-1", "--ram", "-1")
        self.manage("user", "create", "admin", "--project", "admin", "--role", "admin")
        self.http.headers["X-Auth-Token"] = self.manage("token", "create", "admin").strip()
        self.manage("project", "create", "service")
        self.manage("user", "create", "compute", "--project", "service")
        service_token = self.manage("token", "create", "compute").strip()
        with open(self.conf_path) as f:
            text = f.read()
        with open(self.conf_path, "w") as f:
            f.write(text.replace("[compute]\n", "[compute]\nimage_api_token = %s\n"
                                 % service_token, 1))
        self._users = 0

    def token(self, project, role="member"):
        """A token of a new user in ``project`` (created if missing)."""
        try:
            self.manage("project", "create", project)
        except subprocess.CalledProcessError:
            pass  # exists
        self._users += 1
        user = "%s-user%d" % (project, self._users)
        self.manage("user", "create", user, "--project", project, "--role", role)
        return self.manage("token", "create", user).strip()

    def start_daemon(self, name, module=None, extra_args=()):
        """Start ``name`` (api, scheduler, conductor, compute or e.g. compute2 with
        module="compute" and its own --config-file in extra_args)."""
        log = open(os.path.join(self.logs, name + ".out"), "ab")
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "nova_%s.cmd" % (module or name),
             "--config-file", self.conf_path, *extra_args,
             "--log-file", os.path.join(self.logs, name + ".log")],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def start_extra_compute(self, host, extra_conf="", wait=True):
        """Another compute host (on the same libvirtd unless ``extra_conf``
        says otherwise), with its own instances directory and an empty image
        cache of its own. ``extra_conf``: more config lines, after [compute]."""
        workdir = os.path.join(self.workdir, host)
        conf = os.path.join(workdir, "compute.conf")
        os.makedirs(workdir, exist_ok=True)
        transport = ""
        if self.broker_passwords is not None:
            user = "%s.compute.%s" % (self.tag, host)
            self.add_broker_accounts([user])
            transport = "transport_url = %s\n" % self.broker_url(user)
        with open(os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            # metrics_port = 0: the first compute has the stack's metrics port.
            f.write("[DEFAULT]\nhost = %s\n\n[compute]\nmetrics_port = 0\ninstances_path = %s\n"
                    "image_cache_path = %s\n%s%s\n" % (host, os.path.join(workdir, "instances"),
                                                        os.path.join(workdir, "_base"), transport,
                                                        extra_conf))
        self.start_daemon("compute-" + host, module="compute", extra_args=("--config-file", conf))
        if wait:
            wait_for(lambda: self._compute_up(host), 30, what="compute %s heartbeat" % host)
        return workdir

    def computes_up(self):
        return {s["host"] for s in self.get("/v1/services").json()["services"]
                if s["binary"] == "mininova-compute" and s["state"] == "up"}

    def set_disabled(self, host, disabled):
        """Keep the scheduler away from a host (until the services API exists)."""
        import sqlalchemy as sa
        engine = sa.create_engine(self.db_url)
        with engine.begin() as c:
            c.execute(sa.text("UPDATE services SET disabled = :d WHERE host = :h"),
                      {"d": disabled, "h": host})
        engine.dispose()

    def stop_daemon(self, name, kill=False):
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        proc.kill() if kill else proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def _api_up(self):
        try:
            return self.http.get(self.url + "/v1", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    def _compute_up(self, host=None):
        services = self.get("/v1/services").json()["services"]
        return any(s["host"] == (host or self.host) and s["binary"] == "mininova-compute"
                   and s["state"] == "up" for s in services)

    def manage(self, *args, stdin=""):
        """``mininova-manage --config-file <this stack's> ARGS``, in-process
        (a subprocess per call would cost a second of imports), reading
        ``stdin`` (e.g. a password); its stdout."""
        import contextlib
        import io
        from nova_manage import cmd as manage
        out, err = io.StringIO(), io.StringIO()
        saved_stdin, sys.stdin = sys.stdin, io.StringIO(stdin)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = manage.main(["--config-file", self.conf_path, *args])
        finally:
            sys.stdin = saved_stdin
        if code:
            raise subprocess.CalledProcessError(code, ["mininova-manage", *args],
                                                out.getvalue(), err.getvalue())
        return out.getvalue()

    def add_image(self, name, path):
        import json
        return json.loads(self.manage("image", "add", name, path))

    # -- HTTP -------------------------------------------------------------
    def get(self, path, **kw):
        return self.http.get(self.url + path, timeout=10, **kw)

    def post(self, path, body=None, **kw):
        return self.http.post(self.url + path, json=body, timeout=10, **kw)

    def delete(self, path, **kw):
        return self.http.delete(self.url + path, timeout=10, **kw)

    def vm(self, ref):
        r = self.get("/v1/vms/" + ref)
        return r.json()["vm"] if r.status_code == 200 else None

    def wait_status(self, ref, status, timeout=60):
        def check():
            vm = self.vm(ref)
            assert vm is not None, "VM %s vanished" % ref
            if vm["status"] == "ERROR" and status != "ERROR":
                raise VMError("VM %s went ERROR: %s" % (ref, vm["fault"]))
            return vm if vm["status"] == status else None
        return wait_for(check, timeout, what="VM %s to be %s" % (ref, status))

    def action(self, ref, body, expect=202):
        r = self.post("/v1/vms/%s/action" % ref, body)
        assert r.status_code == expect, r.text
        return r

    def compute_log(self):
        with open(os.path.join(self.logs, "compute.log")) as f:
            return f.read()

    def wait_gone(self, ref, timeout=60):
        wait_for(lambda: self.get("/v1/vms/" + ref).status_code == 404, timeout,
                 what="VM %s to be gone" % ref)

    # -- tear-down --------------------------------------------------------
    def delete_all_vms(self, timeout=60):
        """Delete every VM of the admin project and wait until each is gone;
        True if all went within ``timeout`` each."""
        for vm in self.get("/v1/vms").json().get("vms", []):
            self.delete("/v1/vms/" + vm["id"])
        gone = True
        for vm in self.get("/v1/vms").json().get("vms", []):
            try:
                self.wait_gone(vm["id"], timeout=timeout)
            except AssertionError:
                gone = False
        return gone

    def stop(self):
        if self.haproxy is not None:
            self.haproxy.stop()
        for name in list(self.procs):
            self.stop_daemon(name)
        self.http.close()
        self.database.drop_database(self.db_name)
        self.broker.delete_vhost(self.vhost)
        if self.broker_passwords:
            services.delete_users(list(self.broker_passwords), ctl=self._broker_ctl())

    def logs_text(self):
        out = []
        for name in sorted(n[:-4] for n in os.listdir(self.logs) if n.endswith(".log")):
            path = os.path.join(self.logs, name + ".log")
            if os.path.exists(path):
                with open(path) as f:
                    out.append(f.read())
        return "\n".join(out)


def virsh(*args, uri="qemu:///system"):
    return subprocess.run(["virsh", "-c", uri, *args], capture_output=True, text=True)


def domain_names(uri="qemu:///system"):
    out = virsh("list", "--all", "--name", uri=uri).stdout
    return {line.strip() for line in out.splitlines() if line.strip()}


def qemu_img_create(path, size="1G"):
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", path, size], check=True)


