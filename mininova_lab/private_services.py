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

    def destroy(self):
        self._script("destroy", self.name)

    # -- the interface of mininova_lab/services.py ------------------------------------
    def db_url(self, name, host="127.0.0.1", password=None):
        return "postgresql+psycopg2://%s:%s@%s:%d/%s" % (
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
