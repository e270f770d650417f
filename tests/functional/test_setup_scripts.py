"""deploy/start-controller-services.sh as on a machine that has never seen
mininova: a RabbitMQ node that is not running, has no mininova user, vhost or
enabled-plugins file, and a PostgreSQL cluster with Debian's default
authentication (peer on the socket, a password over TCP), not running either.
The script is run under the strictest umask a root shell may have (077): what
it writes for the broker must stay readable by the broker's own user. A second
run changes nothing."""
import os
import stat
import subprocess
import uuid

import kombu
import psycopg2
import pytest
import requests

from tests import prerequisites
from mininova_lab.private_services import PgCluster, RabbitNode
from mininova_lab.stack import ROOT

pytestmark = pytest.mark.real_services("rabbitmq", "postgresql")
SCRIPT = os.path.join(ROOT, "deploy", "start-controller-services.sh")


@pytest.fixture
def new_machine(tmp_path):
    prerequisites.require_root("starts a broker node and a database cluster")
    node, cluster = RabbitNode(management=True), PgCluster()
    try:
        node.create(start=False)
        cluster.create(start=False)
        tag = uuid.uuid4().hex[:8]
        env = dict(os.environ,
                   RABBITMQ_CONF_ENV_FILE=node.env_file,
                   MININOVA_RABBIT_PORT=str(node.port),
                   MININOVA_RABBIT_MANAGEMENT_PORT=str(node.management_port),
                   MININOVA_DB_PORT=str(cluster.port),
                   MININOVA_PG_CLUSTER=cluster.cluster,
                   MININOVA_CREDENTIALS=str(tmp_path / "etc" / "credentials"),
                   MININOVA_RABBIT_USER="mn-" + tag, MININOVA_VHOST="mn-" + tag,
                   MININOVA_DB="mn_" + tag)
        yield node, cluster, env
    finally:
        node.destroy()
        cluster.destroy()


def run_script(env):
    proc = subprocess.run(["bash", "-c", 'umask 077; exec bash "$0"', SCRIPT], env=env,
                          capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def readable_by(user, path):
    return subprocess.run(["runuser", "-u", user, "--", "cat", path],
                          capture_output=True).returncode == 0


def credentials(env):
    with open(env["MININOVA_CREDENTIALS"]) as f:
        return dict(line.split("=", 1) for line in f.read().split())


def test_first_install_then_a_second_run_that_changes_nothing(new_machine):
    node, cluster, env = new_machine
    out = run_script(env)
    for step in ("starting RabbitMQ", "starting PostgreSQL", "writing new credentials",
                 "creating RabbitMQ user", "creating RabbitMQ vhost",
                 "enabling the RabbitMQ management plugin", "creating PostgreSQL role",
                 "creating PostgreSQL database"):
        assert step in out, (step, out)

    creds_path = env["MININOVA_CREDENTIALS"]
    assert stat.S_IMODE(os.stat(creds_path).st_mode) == 0o600
    creds = credentials(env)
    assert creds["RABBIT_PORT"] == str(node.port) and creds["DB_PORT"] == str(cluster.port)
    # The broker reads its enabled-plugins file as its own user.
    plugins = os.path.join(node.dir, "enabled_plugins")
    assert readable_by("rabbitmq", plugins), oct(os.stat(plugins).st_mode)

    # mininova's RabbitMQ login: AMQP on its vhost, and the management UI.
    url = "amqp://%s:%s@127.0.0.1:%d/%s" % (creds["RABBIT_USER"], creds["RABBIT_PASSWORD"],
                                            node.port, env["MININOVA_VHOST"])
    with kombu.Connection(url, connect_timeout=10) as conn:
        conn.connect()
    r = requests.get("http://127.0.0.1:%d/api/whoami" % node.management_port, timeout=10,
                     auth=(creds["RABBIT_USER"], creds["RABBIT_PASSWORD"]))
    assert r.status_code == 200 and "management" in r.json()["tags"], r.text

    # mininova's PostgreSQL role: its password over TCP, and only that.
    pg = dict(host="127.0.0.1", port=cluster.port, user=creds["DB_USER"],
              dbname=env["MININOVA_DB"], connect_timeout=10)
    psycopg2.connect(password=creds["DB_PASSWORD"], **pg).close()
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(password="wrong", **pg)

    before = {p: os.stat(p) for p in (creds_path, plugins)}
    with open(creds_path) as f:
        text = f.read()
    out = run_script(env)
    for step in ("starting", "writing", "creating", "enabling", "setting the password"):
        assert step not in out, (step, out)
    with open(creds_path) as f:
        assert f.read() == text
    for path, st in before.items():
        now = os.stat(path)
        assert (now.st_mode, now.st_uid, now.st_gid) == (st.st_mode, st.st_uid, st.st_gid), path
