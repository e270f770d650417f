"""A RabbitMQ node and a PostgreSQL cluster of a test's own, for tests that
stop, kill or restart the broker or the database: they never touch the
services the machine (or CI) runs. Made by deploy/lab/rabbit-node.sh and
deploy/lab/pg-cluster.sh; each offers what mininova_lab/services.py offers for the
shared ones (create_database, db_url, add_vhost, rabbit_url, ...), so a Stack
runs on them unchanged."""
import os
import secrets
import socket
import subprocess
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAB = os.path.join(ROOT, "deploy", "lab")


def free_port_pair(offset):
    """A port P free on loopback such that P + offset is free too."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + offset > 65535:
            continue
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + offset))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair")


def _run(argv, timeout=180, env=None, input=None):
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                          input=input)
    if proc.returncode != 0:
        raise RuntimeError("%s failed (%d): %s%s" % (" ".join(argv), proc.returncode,
                                                     proc.stdout, proc.stderr))
    return proc.stdout


class RabbitNode:
    """A broker node of its own (node name, AMQP and distribution ports, data
    dir); a user with a password for the tests."""

    # The broker runs as the rabbitmq user: its dir must be reachable by it
    # (pytest's tmp dirs are root's only).
    BASE = "/var/tmp/mininova-rabbit"

    def __init__(self, management=False):
        self.name = "mn-" + uuid.uuid4().hex[:8]
        os.makedirs(self.BASE, mode=0o755, exist_ok=True)
        self.dir = os.path.join(self.BASE, self.name)
        # The distribution port is the AMQP port + 20000 (rabbit-node.sh).
        self.port = free_port_pair(20000)
        self.management_port = free_port_pair(0) if management else None
        self.user, self.password = "mininova", secrets.token_hex(12)
        self.env = dict(os.environ)

    def _script(self, *args, timeout=180):
        return _run(["bash", os.path.join(LAB, "rabbit-node.sh"), *args], timeout=timeout)

    def rabbitmqctl(self, *args, input=None):
        return _run(["rabbitmqctl", "-q", *args], env=self.env, input=input, timeout=120)

    @property
    def env_file(self):
        return os.path.join(self.dir, "rabbitmq-env.conf")

    def create(self, start=True):
        """The node's files; with ``start``, started with a user for the tests."""
        self._script("create", self.dir, self.name, str(self.port),
                     *([str(self.management_port)] if self.management_port else []))
        self.env["RABBITMQ_CONF_ENV_FILE"] = self.env_file
        if start:
            self.start()
            self.rabbitmqctl("add_user", self.user, input=self.password)
        return self

    def start(self):
        self._script("start", self.dir)

    def stop(self):
        """A clean stop (as an operator's restart would)."""
        self._script("stop", self.dir)

    def kill(self):
        self._script("kill", self.dir)

    def destroy(self):
        self._script("destroy", self.dir)

    # -- the interface of mininova_lab/services.py ------------------------------------
    def rabbit_url(self, vhost="", host="127.0.0.1", port=None, password=None):
        return "rabbit://%s:%s@%s:%d/%s" % (self.user, password or self.password, host,
                                            port or self.port, vhost)

    def add_vhost(self, vhost):
        self.rabbitmqctl("add_vhost", vhost)
        self.rabbitmqctl("set_permissions", "-p", vhost, self.user, ".*", ".*", ".*")

    def delete_vhost(self, vhost):
        try:
            self.rabbitmqctl("delete_vhost", vhost)
        except RuntimeError:
            pass


class PgCluster:
    """A PostgreSQL cluster of its own, with Debian's default authentication,
    and a role with a password that may create databases."""

    def __init__(self):
        self.name = "mn" + uuid.uuid4().hex[:8]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.user, self.password = "mininova", secrets.token_hex(12)

    def _script(self, *args):
        return _run(["bash", os.path.join(LAB, "pg-cluster.sh"), *args])

    @property
    def cluster(self):
        """"VERSION NAME", as pg_ctlcluster takes it."""
        version = sorted(os.listdir("/etc/postgresql"), key=lambda v: [int(x) for x in v.split(".")])[-1]
        return "%s %s" % (version, self.name)

    def create(self, start=True):
        """The cluster; with ``start``, started with a role for the tests."""
        self._script("create", self.name, str(self.port))
        if not start:
            return self
        self.start()
        _run(["runuser", "-u", "postgres", "--", "psql", "-v", "ON_ERROR_STOP=1", "-qtA",
              "-d", "postgres"], env=dict(os.environ, PGPORT=str(self.port)),
             input="CREATE ROLE %s LOGIN CREATEDB PASSWORD '%s'" % (self.user, self.password))
        return self

    def start(self):
        self._script("start", self.name)

    def stop(self):
        self._script("stop", self.name)

    def kill(self):
        """kill -9 of the postmaster and all its processes at once (a crash);
        ``start`` then recovers from the WAL."""
        return self._script("kill", self.name)

    def destroy(self):
        self._script("destroy", self.name)

    # -- the interface of mininova_lab/services.py ------------------------------------
    def db_url(self, name, host="127.0.0.1", password=None):
        return "postgresql+psycopg://%s:%s@%s:%d/%s" % (
            self.user, password or self.password, host, self.port, name)

    def _admin(self, sql):
        import psycopg2
        conn = psycopg2.connect(dbname="postgres", user=self.user, password=self.password,
                                host="127.0.0.1", port=self.port, connect_timeout=10)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
        finally:
            conn.close()

    def create_database(self, name):
        self._admin('CREATE DATABASE "%s"' % name)

    def drop_database(self, name):
        self._admin('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)


class RabbitCluster:
    """A RabbitMQ cluster of its own (deploy/lab/rabbit-cluster.sh): N nodes,
    a user with a password; the interface of mininova_lab/services.py for a
    Stack (its transport_url lists every node), and kill/start of a node."""

    BASE = RabbitNode.BASE

    def __init__(self, nodes=3):
        self.size = nodes
        os.makedirs(self.BASE, mode=0o755, exist_ok=True)
        self.dir = os.path.join(self.BASE, "qc-" + uuid.uuid4().hex[:8])
        self.killed = set()
        self.cut = set()  # indices of nodes cut off by the network (mininova_lab.netcut)

    def _script(self, *args, timeout=300):
        return _run(["bash", os.path.join(LAB, "rabbit-cluster.sh"), *args], timeout=timeout)

    def _node(self, *args, timeout=180):
        return _run(["bash", os.path.join(LAB, "rabbit-node.sh"), *args], timeout=timeout)

    def create(self):
        """Up; on failure nothing is left behind."""
        try:
            out = self._script("up", self.dir, str(self.size))
        except BaseException:
            self.destroy()
            raise
        facts = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        facts = {k: v.strip('"') for k, v in facts.items()}
        self.url = facts["RABBIT_CLUSTER_URL"]
        self.vhost = facts["RABBIT_CLUSTER_VHOST"]
        self.user, self.password = facts["RABBIT_CLUSTER_USER"], facts["RABBIT_CLUSTER_PASSWORD"]
        self.nodes = facts["RABBIT_CLUSTER_NODES"].split()
        self.ports = [int(p) for p in facts["RABBIT_CLUSTER_PORTS"].split()]
        self.node_dirs = facts["RABBIT_CLUSTER_NODE_DIRS"].split()
        return self

    def destroy(self):
        self._script("down", self.dir, timeout=120)

    def status(self):
        return self._script("status", self.dir, timeout=120)

    def ctl(self, *args, input=None, node=None):
        """rabbitmqctl ARGS on node index ``node``, default the first live
        one that is not cut off."""
        if node is None:
            node = next(i for i in range(len(self.node_dirs))
                        if i not in self.killed and i not in self.cut)
        return _run(["bash", os.path.join(LAB, "rabbit-node.sh"), "ctl", self.node_dirs[node],
                     "-q", *args], timeout=120, input=input)

    def log_tail(self, node, lines=40):
        """The last lines of node index ``node``'s logs."""
        import glob
        out = []
        for path in sorted(glob.glob(os.path.join(self.node_dirs[node], "log", "*.log"))):
            with open(path, errors="replace") as f:
                out.append("== %s\n%s" % (path, "".join(f.readlines()[-lines:])))
        return "\n".join(out)

    def running_nodes(self, node=None):
        """The nodes running in the cluster as node index ``node`` sees it."""
        import json
        return json.loads(self.ctl("cluster_status", "--formatter", "json",
                                   node=node))["running_nodes"]

    def queues(self, vhost=None):
        """{queue: (type, leader, sorted members)} as a live node sees them."""
        out = self.ctl("list_queues", "-p", vhost or self.vhost, "name", "type", "leader",
                       "members", "--no-table-headers")
        found = {}
        for line in out.splitlines():
            name, qtype, leader, members = line.split("\t")
            found[name] = (qtype, leader, sorted(
                m.strip() for m in members.strip("[]").split(",") if m.strip()))
        return found

    def kill(self, node):
        """kill -9 of ``node`` (a name of self.nodes)."""
        index = self.nodes.index(node)
        self._node("kill", self.node_dirs[index])
        self.killed.add(index)

    def revive(self):
        """Start the killed nodes again; they rejoin the cluster (and their
        quorum queues as followers)."""
        for index in sorted(self.killed):
            self._node("start", self.node_dirs[index])
        self.killed.clear()

    def amqp_urls(self, vhost=None):
        return ["amqp://%s:%s@127.0.0.1:%d/%s" % (self.user, self.password, port,
                                                   self.vhost if vhost is None else vhost)
                for port in self.ports]

    # -- the interface of mininova_lab/services.py ------------------------------------
    def rabbit_url(self, vhost="", first=0):
        """Every node, node ``first`` first."""
        ports = self.ports[first:] + self.ports[:first]
        return "rabbit://%s/%s" % (",".join("%s:%s@127.0.0.1:%d" % (
            self.user, self.password, port) for port in ports), vhost)

    def add_vhost(self, vhost):
        self.ctl("add_vhost", vhost)
        self.ctl("set_permissions", "-p", vhost, self.user, ".*", ".*", ".*")

    def delete_vhost(self, vhost):
        try:
            self.ctl("delete_vhost", vhost)
        except RuntimeError:
            pass
