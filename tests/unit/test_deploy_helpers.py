"""The Python helpers of the role scripts: deploy/wait-service.py (waiting for
the API and a service's heartbeat) and deploy/controller-bootstrap.py (schema,
accounts, tokens, images; idempotent). Real HTTP server and a real SQLite
database, no mocks."""
import http.server
import importlib.util
import json
import os
import stat
import subprocess
import threading

import pytest

from nova_api.diskformats import QCOW2_MAGIC

DEPLOY = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "deploy")


def load(filename):
    spec = importlib.util.spec_from_file_location(filename.replace("-", "_")[:-3],
                                                  os.path.join(DEPLOY, filename))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


wait_service = load("wait-service.py")
bootstrap = load("controller-bootstrap.py")


# -- wait-service.py ------------------------------------------------------------------

class FakeAPI(http.server.BaseHTTPRequestHandler):
    """A tiny stand-in of the API's two endpoints (a real HTTP server)."""
    services = []
    token = "secret"

    def do_GET(self):
        if self.path == "/v1":
            self._send(200, {"versions": []})
        elif self.path == "/v1/services":
            if self.headers.get("X-Auth-Token") != self.token:
                self._send(401, {"error": {"code": 401, "message": "bad token"}})
            else:
                self._send(200, {"services": self.services})
        else:
            self._send(404, {})

    def _send(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def api():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeAPI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    FakeAPI.services = []
    try:
        yield "http://127.0.0.1:%d" % server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_api_answers(api):
    assert wait_service.main(["--api", api, "--timeout", "2"]) == 0


def test_service_up_only_when_that_host_reports_up(api):
    FakeAPI.services = [{"binary": "mininova-compute", "host": "c1", "state": "down"},
                        {"binary": "mininova-scheduler", "host": "c2", "state": "up"}]
    assert not wait_service.service_up(api, "secret", "mininova-compute", "c1")
    assert not wait_service.service_up(api, "secret", "mininova-compute", "c2")
    FakeAPI.services[0]["state"] = "up"
    assert wait_service.service_up(api, "secret", "mininova-compute", "c1")
    assert wait_service.main(["--api", api, "--binary", "mininova-compute", "--host", "c1",
                              "--token", "secret", "--timeout", "2"]) == 0


def test_new_heartbeat_ignores_the_one_seen_first(api):
    """A daemon killed moments ago still shows "up" with its last heartbeat:
    after a (re)start only a later heartbeat proves the new process runs."""
    FakeAPI.services = [{"binary": "mininova-compute", "host": "c1", "state": "up",
                         "last_heartbeat": "2026-01-01T00:00:00Z"}]
    check = wait_service.NewHeartbeat(
        lambda: wait_service.service_state(api, "secret", "mininova-compute", "c1"))
    assert not check() and not check()
    FakeAPI.services[0]["last_heartbeat"] = "2026-01-01T00:00:02Z"
    assert check()
    FakeAPI.services[0]["last_heartbeat"] = "2026-01-01T00:00:00Z"
    assert wait_service.main(["--api", api, "--binary", "mininova-compute", "--host", "c1",
                              "--token", "secret", "--timeout", "0.5",
                              "--new-heartbeat"]) == 1
    assert wait_service.main(["--api", api, "--binary", "mininova-compute", "--host", "c1",
                              "--token", "secret", "--timeout", "0.5"]) == 0


def test_new_heartbeat_of_a_service_seen_first_without_a_row(api):
    check = wait_service.NewHeartbeat(
        lambda: wait_service.service_state(api, "secret", "mininova-compute", "c1"))
    assert not check()
    FakeAPI.services = [{"binary": "mininova-compute", "host": "c1", "state": "up",
                         "last_heartbeat": "2026-01-01T00:00:00Z"}]
    assert check()


def test_a_wrong_token_fails_at_once(api, capsys):
    clock = iter(range(100))
    ok, reason = wait_service.wait(
        lambda: wait_service.service_up(api, "wrong", "mininova-compute", "c1"), 50,
        clock=lambda: next(clock), sleep=lambda s: None)
    assert not ok and "HTTP 401" in reason


def test_timeout_names_the_last_reason(capsys):
    now = [0.0]

    def sleep(seconds):
        now[0] += seconds
    ok, reason = wait_service.wait(lambda: False, 1.0, clock=lambda: now[0], sleep=sleep)
    assert not ok and reason == "not up yet" and now[0] >= 1.0
    # nothing listens on port 9 of 127.0.0.1: connection refused until the deadline
    assert wait_service.main(["--api", "http://127.0.0.1:9", "--timeout", "0.3"]) == 1
    assert "not up after" in capsys.readouterr().err


def test_usage_errors():
    with pytest.raises(SystemExit) as e:
        wait_service.main(["--api", "http://x", "--binary", "mininova-compute"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        wait_service.main(["--api", "http://x", "--binary", "b", "--host", "h"])
    assert e.value.code == 2   # no token


# -- controller-bootstrap.py ----------------------------------------------------------

@pytest.fixture
def controller(tmp_path, monkeypatch):
    monkeypatch.delenv("MININOVA_TOKEN", raising=False)
    state = tmp_path / "state"
    state.mkdir()
    conf = tmp_path / "mininova.conf"
    conf.write_text("[DEFAULT]\nstate_path = %s\n" % state)   # SQLite in state_path
    image = tmp_path / "blank.qcow2"
    image.write_bytes(QCOW2_MAGIC + b"\0" * 1020)
    return bootstrap.Manage(str(conf)), str(state), str(image)


def test_bootstrap_creates_accounts_once(controller):
    manage, state, image = controller
    tokens, changes = bootstrap.bootstrap(manage, state, "http://10.0.0.2:8774",
                                          [("blank", image)])
    assert set(tokens) == {"admin", "demo", "compute"}
    assert "image blank" in changes and len(changes) == 6   # 3 users, 2 rc files, 1 image
    for user in tokens:
        path = os.path.join(state, "creds", user + ".token")
        assert open(path).read().strip() == tokens[user]
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert open(os.path.join(state, "demorc")).read() == (
        "export MININOVA_URL=http://10.0.0.2:8774\nexport MININOVA_TOKEN=%s\n" % tokens["demo"])

    again, changes = bootstrap.bootstrap(manage, state, "http://10.0.0.2:8774",
                                         [("blank", image)])
    assert again == tokens and changes == []
    assert len(bootstrap.image_names(manage("image", "list"))) == 1


def test_bootstrap_survives_a_lost_token_file(controller):
    manage, state, _ = controller
    tokens, _ = bootstrap.bootstrap(manage, state, "http://h:1")
    os.unlink(os.path.join(state, "creds", "compute.token"))
    again, changes = bootstrap.bootstrap(manage, state, "http://h:1")
    assert again["compute"] != tokens["compute"] and again["admin"] == tokens["admin"]
    assert changes == ["user compute (admin in service)"]


def test_bootstrap_fails_clearly_on_a_missing_image(controller, capsys):
    manage, state, _ = controller
    conf = manage.conf_path
    assert bootstrap.main(["--config-file", conf, "--state-dir", state, "--api-url", "http://h:1",
                           "--image", "tiny=/nonexistent.qcow2"]) == 1
    assert "no file /nonexistent.qcow2" in capsys.readouterr().err


def test_image_argument_is_name_equals_path():
    assert bootstrap.parse_image("tiny=/a/b=c.qcow2") == ("tiny", "/a/b=c.qcow2")
    for bad in ("tiny", "=x", "tiny="):
        with pytest.raises(Exception):
            bootstrap.parse_image(bad)


# -- role-common.sh under systemd (none here: a stand-in systemctl records calls) ------

FAKE_SYSTEMCTL = """#!/bin/bash
echo "$*" >> "$FAKE_SYSTEMD/calls"
unit=${@: -1}
case $1 in
is-active) [[ -e $FAKE_SYSTEMD/active-$unit ]] ;;
start|restart) touch "$FAKE_SYSTEMD/active-$unit" ;;
stop) rm -f "$FAKE_SYSTEMD/active-$unit" ;;
esac
"""


def test_start_daemon_installs_units_and_restarts_only_on_change(tmp_path):
    fake = tmp_path / "systemd"
    (fake / "bin").mkdir(parents=True)
    (fake / "bin" / "systemctl").write_text(FAKE_SYSTEMCTL)
    (fake / "bin" / "systemctl").chmod(0o755)
    units = tmp_path / "units"
    env = dict(os.environ, PATH="%s:%s" % (fake / "bin", os.environ["PATH"]),
               FAKE_SYSTEMD=str(fake), MININOVA_INIT="systemd", MININOVA_UNIT_DIR=str(units))

    def run(snippet):
        (fake / "calls").write_text("")
        subprocess.run(["bash", "-c", 'set -euo pipefail; PROG=test VENV=/srv/venv '
                        'CONF=/srv/mininova.conf LOGS=/x RUN=/x; . "$0/role-common.sh"; ' + snippet,
                        DEPLOY], env=env, check=True, capture_output=True)
        return (fake / "calls").read_text().splitlines()

    assert run("start_daemon compute 0") == [
        "daemon-reload", "enable -q mininova-compute.service",
        "restart mininova-compute.service"]
    unit = (units / "mininova-compute.service").read_text()
    assert "ExecStart=/srv/venv/bin/mininova-compute --config-file /srv/mininova.conf\n" in unit
    assert stat.S_IMODE((units / "mininova-compute.service").stat().st_mode) == 0o644
    # unchanged and running: nothing but enable (idempotent) and the check
    assert run("start_daemon compute 0") == [
        "enable -q mininova-compute.service", "is-active -q mininova-compute.service"]
    # the config changed: restart
    assert run("start_daemon compute 1")[-1] == "restart mininova-compute.service"
    assert run("stop_daemon compute") == ["stop mininova-compute.service"]
    # stopped (e.g. by hand): started again
    assert run("start_daemon compute 0")[-1] == "start mininova-compute.service"


def test_transport_url_of_one_or_several_brokers():
    """role-common.sh's transport_url: controller.sh --rabbit-hosts and the
    RABBIT_HOSTS compute.sh reads from compute.env give a failover list."""
    def url(*args):
        return subprocess.run(
            ["bash", "-c", 'PROG=test; . "$0/role-common.sh"; transport_url "$@"', DEPLOY,
             *args], check=True, capture_output=True, text=True).stdout.strip()
    assert url("u", "p w", "10.0.0.1", "5672", "/") == "rabbit://u:p%20w@10.0.0.1:5672/"
    assert url("u", "p", "10.0.0.1,10.0.0.2,10.0.0.3", "5673", "v h") == (
        "rabbit://u:p@10.0.0.1:5673,u:p@10.0.0.2:5673,u:p@10.0.0.3:5673/v%20h")
