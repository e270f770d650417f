"""deploy/controller.sh as one of several controllers, on this machine (no
compute hosts, no sim hosts): --peers puts HAProxy (its own process, the
configuration of deploy/haproxy-cfg.sh) in front of the APIs at --lb-port;
--rabbit-hosts makes transport_url a failover list (here a dead broker
address first, then the real one: the daemons fail over to it). A second run
changes nothing and keeps the same HAProxy; --stop stops it with the daemons.
A private database, vhost, RabbitMQ user and ports, all dropped afterwards."""
import os
import subprocess
import sys
import uuid

import pytest
import requests

from mininova_lab import services
from mininova_lab.stack import ROOT, free_port
from mininova_lab.waiting import wait_for
from tests import prerequisites

pytestmark = pytest.mark.real_services("rabbitmq", "postgresql", "http")

DEPLOY = os.path.join(ROOT, "deploy")
VENV = os.path.dirname(os.path.dirname(sys.executable))


def haproxy_pids(cfg):
    out = subprocess.run(["pgrep", "-f", "haproxy .*-f %s" % cfg], capture_output=True,
                         text=True).stdout
    return sorted(out.split())


@pytest.fixture
def controller(tmp_path):
    prerequisites.require_root("the role scripts")
    tag = "ha" + uuid.uuid4().hex[:6]
    state = str(tmp_path / "controller")
    api_port, lb_port = free_port(), free_port()
    argv = ["bash", os.path.join(DEPLOY, "controller.sh"), "--address", "127.0.0.1",
            "--credentials", str(tmp_path / "credentials"), "--state-dir", state,
            "--api-port", str(api_port), "--db-name", "mininova_" + tag,
            "--vhost", "mininova-" + tag, "--rabbit-user", "mininova-" + tag,
            "--host", "ctl-" + tag, "--venv", VENV, "--no-rabbit-management",
            "--peers", "127.0.0.1", "--lb-port", str(lb_port),
            "--rabbit-hosts", "127.0.0.2,127.0.0.1"]

    def run():
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd=ROOT,
                              stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, proc.stderr[-6000:]
        return proc.stderr
    try:
        yield run, state, api_port, lb_port
    finally:
        subprocess.run(["bash", os.path.join(DEPLOY, "controller.sh"), "--stop", "--state-dir",
                        state, "--venv", VENV], capture_output=True, timeout=120)
        services.pg_superuser('DROP DATABASE IF EXISTS "mininova_%s" WITH (FORCE)' % tag)
        services.pg_superuser('DROP ROLE IF EXISTS "mininova_%s"' % tag)
        for args in (["delete_vhost", "mininova-" + tag], ["delete_user", "mininova-" + tag]):
            services.rabbitmqctl(*args, check=False)
        # The role accounts controller.sh made (README, Broker accounts).
        services.delete_users(["mininova-%s.%s" % (tag, role) for role in
                               ("api", "scheduler", "conductor", "manage")])


def test_controller_with_peers_runs_haproxy_in_front_of_its_api(controller):
    run, state, api_port, lb_port = controller
    err = run()
    cfg = os.path.join(state, "haproxy.cfg")
    text = open(cfg).read()
    assert "option httpchk GET /healthcheck" in text
    assert "server api1 127.0.0.1:%d\n" % api_port in text
    assert "bind 127.0.0.1:%d\n" % lb_port in text
    pids = haproxy_pids(cfg)
    assert len(pids) == 1, pids
    lb = "http://127.0.0.1:%d" % lb_port
    r = requests.get(lb + "/healthcheck", timeout=10)
    assert (r.status_code, r.text) == (200, "OK")
    token = open(os.path.join(state, "creds", "admin.token")).read().strip()
    services_up = requests.get(lb + "/v1/services", headers={"X-Auth-Token": token},
                               timeout=10).json()["services"]
    assert {s["binary"] for s in services_up if s["state"] == "up"} == {
        "mininova-scheduler", "mininova-conductor"}
    conf = open(os.path.join(state, "mininova.conf")).read()
    # Every daemon's account on the failover list.
    assert conf.count("@127.0.0.2:%d," % services.rabbit_port()) == 4, conf
    env = dict(line.split("=", 1) for line in open(os.path.join(state, "compute.env"))
               if "=" in line and not line.startswith("#"))
    assert env["API_PORT"].strip() == str(lb_port)
    assert env["RABBIT_HOSTS"].strip() == "127.0.0.2,127.0.0.1"
    assert "haproxy started" in err

    mtime = os.stat(cfg).st_mtime_ns
    err = run()
    assert "haproxy already running" in err
    assert haproxy_pids(cfg) == pids and os.stat(cfg).st_mtime_ns == mtime

    subprocess.run(["bash", os.path.join(DEPLOY, "controller.sh"), "--stop", "--state-dir",
                    state, "--venv", VENV], check=True, capture_output=True, timeout=120)
    wait_for(lambda: haproxy_pids(cfg) == [], 30, what="haproxy stopped")
