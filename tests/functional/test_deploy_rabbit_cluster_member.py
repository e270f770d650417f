"""deploy/rabbit-cluster-member.sh (what deploy/controller.sh --rabbit-cluster
runs on each controller) against two private RabbitMQ nodes of this test
(deploy/lab/rabbit-node.sh, an epmd of their own, each node its own cookie
at first): the second node gets the seed's cookie and pause_minority (one
restart), joins the seed's cluster, and a second run changes nothing. The
system's broker, cookie and epmd are not involved."""
import json
import os
import secrets
import shutil
import subprocess
import uuid

import pytest

from mininova_lab.private_services import RabbitNode, free_port_pair

pytestmark = pytest.mark.real_services("rabbitmq")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAB = os.path.join(ROOT, "deploy", "lab")
SCRIPT = os.path.join(ROOT, "deploy", "rabbit-cluster-member.sh")


def run(*args, env=None, check=True):
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, **(env or {})))
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def node_script(*args):
    return run("bash", os.path.join(LAB, "rabbit-node.sh"), *args)


@pytest.fixture
def nodes():
    os.makedirs(RabbitNode.BASE, mode=0o755, exist_ok=True)
    base = os.path.join(RabbitNode.BASE, "mbr-" + uuid.uuid4().hex[:8])
    epmd_port = free_port_pair(0)
    made = []
    try:
        for i in (1, 2):
            home = os.path.join(base, "home%d" % i)
            os.makedirs(home)
            with open(os.path.join(home, ".erlang.cookie"), "w") as f:
                f.write(secrets.token_hex(16))
            os.chmod(os.path.join(home, ".erlang.cookie"), 0o400)
            shutil.chown(home, "rabbitmq", "rabbitmq")
            shutil.chown(os.path.join(home, ".erlang.cookie"), "rabbitmq", "rabbitmq")
            os.chmod(base, 0o755)
            d = os.path.join(base, "n%d" % i)
            name = "mbr%s-%d" % (os.path.basename(base)[4:], i)
            run("bash", os.path.join(LAB, "rabbit-node.sh"), "create", d, name,
                str(free_port_pair(20000)),
                env={"RABBIT_NODE_HOME": home, "RABBIT_NODE_EPMD_PORT": str(epmd_port)})
            made.append({"dir": d, "home": home, "node": name + "@localhost"})
        for n in made:
            node_script("start", n["dir"])
        yield made
    finally:
        for n in made:
            node_script("destroy", n["dir"])
        run("epmd", "-port", str(epmd_port), "-kill", check=False)
        shutil.rmtree(base, ignore_errors=True)


def ctl(node, *args):
    return run("rabbitmqctl", "-q", *args,
               env={"RABBITMQ_CONF_ENV_FILE": os.path.join(node["dir"], "rabbitmq-env.conf")})


def member(node, seed):
    d = node["dir"]
    return run("bash", SCRIPT, "--cookie", os.path.join(seed["home"], ".erlang.cookie"),
               "--join", seed["node"], "--conf", os.path.join(d, "rabbitmq.conf"),
               "--cookie-path", os.path.join(node["home"], ".erlang.cookie"),
               env={"RABBITMQ_CONF_ENV_FILE": os.path.join(d, "rabbitmq-env.conf"),
                    "RABBIT_STOP_CMD": "bash %s/rabbit-node.sh stop %s" % (LAB, d),
                    "RABBIT_START_CMD": "bash %s/rabbit-node.sh start %s" % (LAB, d)})


def declare_quorum_queue(node, name):
    """A quorum queue on ``node`` alone (made before the other joined)."""
    import amqp
    password = secrets.token_hex(8)
    ctl(node, "add_user", "t", password)
    ctl(node, "set_permissions", "t", ".*", ".*", ".*")
    port = int(open(os.path.join(node["dir"], "rabbitmq-env.conf")).read()
               .split("NODE_PORT=")[1].split()[0])
    with amqp.Connection("127.0.0.1:%d" % port, userid="t", password=password) as conn:
        conn.connect()
        conn.channel().queue_declare(name, durable=True, auto_delete=False,
                                     arguments={"x-queue-type": "quorum"})


def members(node, queue):
    rows = json.loads(ctl(node, "list_queues", "name", "members", "--formatter",
                          "json").stdout)
    return sorted(next(r["members"] for r in rows if r["name"] == queue))


def test_second_node_takes_the_cookie_and_joins_once(nodes):
    seed, other = nodes
    declare_quorum_queue(seed, "early")
    assert members(seed, "early") == [seed["node"]]
    with open(os.path.join(other["dir"], "pid")) as f:
        pid_before = f.read().strip()
    first = member(other, seed)
    assert "restarting RabbitMQ" in first.stderr, first.stderr
    assert "joining the cluster of %s" % seed["node"] in first.stderr, first.stderr
    with open(os.path.join(seed["home"], ".erlang.cookie")) as a, \
            open(os.path.join(other["home"], ".erlang.cookie")) as b:
        assert a.read() == b.read()
    with open(os.path.join(other["dir"], "rabbitmq.conf")) as f:
        assert "cluster_partition_handling = pause_minority" in f.read().splitlines()
    status = json.loads(ctl(seed, "cluster_status", "--formatter", "json").stdout)
    assert sorted(status["running_nodes"]) == sorted([seed["node"], other["node"]])
    with open(os.path.join(other["dir"], "pid")) as f:
        pid_after = f.read().strip()
    assert pid_after != pid_before   # restarted once for the cookie
    assert members(seed, "early") == sorted([seed["node"], other["node"]])

    again = member(other, seed)
    assert "already in the cluster of %s" % seed["node"] in again.stderr, again.stderr
    assert "restarting" not in again.stderr and "joining" not in again.stderr, again.stderr
    with open(os.path.join(other["dir"], "pid")) as f:
        assert f.read().strip() == pid_after
    status = json.loads(ctl(other, "cluster_status", "--formatter", "json").stdout)
    assert sorted(status["running_nodes"]) == sorted([seed["node"], other["node"]])


def test_usage_errors(tmp_path):
    bad = tmp_path / "cookie"
    bad.write_text("short")
    assert "--cookie FILE is required" in run("bash", SCRIPT, check=False).stderr
    assert "20-255 letters" in run("bash", SCRIPT, "--cookie", str(bad), check=False).stderr
    bad.write_text("a" * 32)
    proc = run("bash", SCRIPT, "--cookie", str(bad), "--join", "no-at-sign", check=False)
    assert proc.returncode != 0 and "bad --join" in proc.stderr


@pytest.mark.parametrize("args, error", [
    (["--rabbit-cluster", "c1=127.0.0.1"], "--rabbit-cluster needs --rabbit-cookie FILE"),
    (["--rabbit-cluster", "c1:127.0.0.1", "--rabbit-cookie", "C"], "bad --rabbit-cluster"),
    (["--rabbit-cluster", "c1=127.0.0.9,c2=127.0.0.8", "--rabbit-cookie", "C"],
     "must name this controller's --address 127.0.0.1"),
    (["--rabbit-cookie", "C"], "--rabbit-cookie goes with --rabbit-cluster"),
])
def test_controller_refuses_bad_cluster_options(tmp_path, args, error):
    """Refused before anything is installed or started (the validation comes first)."""
    args = [str(tmp_path / "cookie") if a == "C" else a for a in args]
    proc = run("bash", os.path.join(ROOT, "deploy", "controller.sh"), "--address", "127.0.0.1",
               "--no-packages", "--state-dir", str(tmp_path / "state"), *args, check=False)
    assert proc.returncode != 0 and error in proc.stderr, proc.stderr
    assert not (tmp_path / "state").exists() and not (tmp_path / "cookie").exists()
