"""The ``mininova`` CLI against the real Flask app, served over loopback HTTP
in a thread (SQLite, fake RPC that plays scheduler and compute in threads).
The CLI runs as ``python -S -m mininova_client.cli``: a real process with no
site-packages, which also proves it needs nothing beyond the standard library."""
import contextlib
import io
import json
import os
import re
import subprocess
import sys
import threading
import time

import pytest
from werkzeug.serving import make_server

from common import states
from common.db import actions
from common.db import api as db_api
from common.db.models import utcnow
from common.timeline import DbSink, Timeline
from nova_api.app import create_app
from nova_conductor.manager import ConductorManager
from tests.unit.conftest import token_for
from mininova_lab.waiting import wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REQ = r"\(request req-[0-9a-f-]+\)"
STEP = 0.15  # seconds each fake step takes


class FakeCloud:
    """Scheduler and compute RPC APIs in one: each cast is carried out a
    moment later in a thread, through the conductor, as the real daemons would.
    VM names steer it: bad* fail to build, slow* never leave the scheduler,
    flaky* fail their power actions."""

    def __init__(self, db):
        self.db = db
        self.conductor = ConductorManager(db)
        self.timeline = Timeline(DbSink(db), "h1")
        self.calls = []
        self.threads = []

    def _later(self, fn, *args):
        t = threading.Thread(target=fn, args=args, daemon=True)
        self.threads.append(t)
        t.start()

    def _name(self, instance_id):
        with self.db.transaction() as s:
            return db_api.instance_get(s, instance_id).name

    def build_instances(self, ctxt, instance_id, action_id=None):
        self.calls.append(("build_instances", instance_id))
        if not self._name(instance_id).startswith("slow"):
            self._later(self._build, ctxt, instance_id)

    def _build(self, ctxt, instance_id):
        time.sleep(STEP)
        with self.db.transaction() as s:
            db_api.instance_update_if(s, instance_id, {"host": "h1",
                                                       "task_state": states.SPAWNING})
        self.timeline.record(ctxt, instance_id, "scheduled", details="on h1")
        time.sleep(STEP)
        now = actions.format_time(utcnow())
        event = {"event": "spawned", "host": "h1", "start_time": now, "finish_time": now,
                 "result": "success", "details": None}
        if self._name(instance_id).startswith("bad"):
            self.conductor.instance_build_failed(ctxt, instance_id, "h1",
                                                 "base image blank is missing", [event])
        else:
            self.conductor.instance_spawned(ctxt, instance_id, "h1", "running", [event])

    def __getattr__(self, method):  # stop_instance, start_instance, ...
        action = method[:-len("_instance")]
        if not method.endswith("_instance") or action not in (
                "stop", "start", "reboot", "pause", "unpause", "suspend", "resume"):
            raise AttributeError(method)

        def cast(ctxt, host, instance_id, *args):
            self.calls.append((method, instance_id) + args)
            self._later(self._power, ctxt, host, instance_id, method)
        return cast

    def _power(self, ctxt, host, instance_id, method):
        time.sleep(STEP)
        with self.db.transaction() as s:
            task = db_api.instance_get(s, instance_id).task_state
        power = {states.POWERING_OFF: "shutdown", states.PAUSING: "paused",
                 states.SUSPENDING: "suspended"}.get(task, "running")
        with self.timeline.step(ctxt, instance_id, task):
            pass
        if self._name(instance_id).startswith("flaky"):
            self.conductor.instance_task_failed(ctxt, instance_id, host, task, "running",
                                                "the guest ignored the ACPI shutdown")
            self.timeline.finish(ctxt, instance_id, "error", "the guest ignored it")
        else:
            self.conductor.instance_task_done(ctxt, instance_id, host, task, power)
            self.timeline.finish(ctxt, instance_id, "success")

    def terminate_instance(self, ctxt, host, instance_id):
        self.calls.append(("terminate_instance", instance_id))
        self._later(self._terminate, ctxt, host, instance_id)

    def _terminate(self, ctxt, host, instance_id):
        time.sleep(STEP)
        self.conductor.instance_terminated(ctxt, instance_id, host)
        self.timeline.finish(ctxt, instance_id, "success")

    def get_console_output(self, ctxt, host, instance_id, lines):
        return "".join("boot line %d\n" % i for i in range(lines))


@contextlib.contextmanager
def served_cloud(conf, db):
    """The real app over loopback with a FakeCloud behind it (url, token)."""
    fake = FakeCloud(db)
    app = create_app(conf, db, fake, fake)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = "http://127.0.0.1:%d" % server.server_port
    fake.token = token_for(db, "default", "admin")
    try:
        yield fake
    finally:
        server.shutdown()
        thread.join(5)
        for t in fake.threads:
            t.join(5)


@pytest.fixture
def cloud(conf, db, image):
    with served_cloud(conf, db) as fake:
        yield fake


class Result:
    def __init__(self, proc):
        self.code, self.out, self.err = proc.returncode, proc.stdout, proc.stderr

    def json(self):
        return json.loads(self.out)

    def __repr__(self):
        return "<exit %d\nstdout: %s\nstderr: %s>" % (self.code, self.out, self.err)


def run(*args, env=None, token=None, url=None, cloud=None, timeout=30):
    """``mininova ARGS`` as a process; ``cloud`` gives MININOVA_URL/_TOKEN."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MININOVA_")}
    if cloud is not None:
        environ.update(MININOVA_URL=cloud.url, MININOVA_TOKEN=cloud.token)
    environ.update(env or {})
    proc = subprocess.run([sys.executable, "-S", "-m", "mininova_client.cli", *args],
                          cwd=ROOT, env=environ, capture_output=True, text=True,
                          timeout=timeout)
    return Result(proc)


def table_rows(text):
    """The cells of a boxed table, header first; checks the columns align."""
    lines = [line for line in text.splitlines() if line.startswith(("|", "+"))]
    assert lines and len({len(line) for line in lines}) == 1, text
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines
            if line.startswith("|")]


def fields(text):
    return {row[0]: row[1] for row in table_rows(text)[1:]}


# -- basics: tables, json, errors, credentials ---------------------------------

def test_create_list_show_tables_and_json(cloud):
    r = run("vm", "create", "web1", "--image", "blank", "--flavor", "m1.tiny", cloud=cloud)
    assert r.code == 0, r
    shown = fields(r.out)
    assert shown["name"] == "web1" and shown["status"] == "BUILD"
    assert shown["flavor"].startswith("m1.tiny (1 vCPU, 128 MB RAM")
    r = run("vm", "list", cloud=cloud)
    assert r.code == 0, r
    header, row = table_rows(r.out)
    assert header[:3] == ["ID", "Name", "Status"] and row[1] == "web1"
    r = run("vm", "list", "-f", "json", cloud=cloud)
    assert r.code == 0 and r.json()["vms"][0]["name"] == "web1"
    vm = r.json()["vms"][0]
    r = run("-f", "json", "vm", "show", vm["id"], cloud=cloud)  # option before the command
    assert r.json()["vm"]["id"] == vm["id"] and r.json()["vm"]["image"]["name"] == "blank"


def test_api_errors_print_message_and_request_id(cloud):
    assert run("vm", "create", "web1", "--image", "blank", "--flavor", "m1.tiny", "--wait",
               cloud=cloud).code == 0
    r = run("vm", "start", "web1", cloud=cloud)
    assert r.code == 1
    assert re.fullmatch(r"error 409: cannot start VM web1 while it is ACTIVE %s\n" % REQ,
                        r.err), r
    r = run("vm", "create", "web1", "--image", "blank", "--flavor", "m1.tiny", cloud=cloud)
    assert r.code == 1 and re.search(r"error 409: .*web1.* %s" % REQ, r.err), r
    r = run("vm", "show", "nope", cloud=cloud)
    assert r.code == 1 and r.err.startswith("error 404: ") and r.out == "", r
    r = run("vm", "create", "x", "--image", "missing", "--flavor", "m1.tiny", "-f", "json",
            cloud=cloud)
    assert r.code == 1 and "missing" in r.err and r.out == ""


def test_credentials_from_env_and_flags(cloud):
    # Flags win over the environment.
    r = run("vm", "list", "--token", cloud.token, env={"MININOVA_URL": cloud.url,
                                                       "MININOVA_TOKEN": "mn-wrong"})
    assert r.code == 0, r
    r = run("vm", "list", env={"MININOVA_URL": cloud.url, "MININOVA_TOKEN": "mn-wrong"})
    assert r.code == 1 and r.err.startswith("error 401: ") and "request req-" in r.err
    r = run("--url", cloud.url, "--token", cloud.token, "flavor", "list")
    assert r.code == 0 and ["1", "m1.tiny", "1", "128", "1"] in table_rows(r.out)
    r = run("vm", "list")
    assert r.code == 2 and "MININOVA_URL" in r.err
    r = run("vm", "list", env={"MININOVA_URL": cloud.url})
    assert r.code == 2 and "MININOVA_TOKEN" in r.err
    closed = "http://127.0.0.1:%d" % _closed_port()
    r = run("vm", "list", "--url", closed, cloud=cloud)
    assert r.code == 5 and r.err.startswith("error: cannot connect to " + closed), r


def _closed_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_usage_errors_exit_2(cloud):
    assert run("vm", cloud=cloud).code == 2
    assert run("vm", "frobnicate", "x", cloud=cloud).code == 2
    assert run("vm", "create", "x", "--image", "blank", cloud=cloud).code == 2  # no --flavor
    assert run("vm", "list", "-f", "yaml", cloud=cloud).code == 2
    r = run("server-group", "create", "g", "--policy", "sometimes", cloud=cloud)
    assert r.code == 2 and "affinity" in r.err
    r = run("flavor", "create", "m1.huge", "--vcpus", "8", "--ram", "8192", "--disk", "80")
    assert r.code == 2 and "mininova-manage flavor create" in r.err


# -- --wait ---------------------------------------------------------------------

def test_create_wait_active_with_progress_lines(cloud):
    r = run("vm", "create", "web1", "--image", "blank", "--flavor", "m1.tiny", "--wait",
            cloud=cloud)
    assert r.code == 0, r
    assert fields(r.out)["status"] == "ACTIVE" and fields(r.out)["host"] == "h1"
    progress = r.err.splitlines()
    assert all(re.match(r"\[ *\d+\.\ds\] web1: ", line) for line in progress), r.err
    assert "step: scheduled" in r.err and progress[-1].endswith("web1: ACTIVE, step: reported")
    assert "\r" not in r.err  # not a terminal: plain lines


def test_create_wait_error_exits_3_with_fault(cloud):
    r = run("vm", "create", "bad1", "--image", "blank", "--flavor", "m1.tiny", "--wait",
            cloud=cloud)
    assert r.code == 3, r
    assert re.search(r"error: VM bad1 went ERROR: base image blank is missing %s" % REQ,
                     r.err), r


def test_wait_timeout_exits_4(cloud):
    t0 = time.monotonic()
    r = run("vm", "create", "slow1", "--image", "blank", "--flavor", "m1.tiny", "--wait",
            "--timeout", "1", cloud=cloud)
    assert r.code == 4, r
    assert "timed out after 1 s waiting for VM slow1 to be ACTIVE (now BUILD, task scheduling)" \
        in r.err
    assert time.monotonic() - t0 < 10


def test_power_actions_wait_and_delete(cloud):
    assert run("vm", "create", "web1", "--image", "blank", "--flavor", "m1.tiny", "--wait",
               cloud=cloud).code == 0
    for action, status in [("stop", "SHUTOFF"), ("start", "ACTIVE"), ("pause", "PAUSED"),
                           ("unpause", "ACTIVE"), ("suspend", "SUSPENDED"),
                           ("resume", "ACTIVE")]:
        r = run("vm", action, "web1", "--wait", cloud=cloud)
        assert r.code == 0 and r.out == "VM web1 is %s.\n" % status, (action, r)
    r = run("vm", "reboot", "web1", "--hard", "--wait", "-f", "json", cloud=cloud)
    assert r.code == 0 and r.json()["vm"]["status"] == "ACTIVE"
    assert cloud.calls[-1][0] == "reboot_instance" and cloud.calls[-1][2] is True
    r = run("vm", "reboot", "web1", cloud=cloud)  # no --wait: accepted, with its request id
    assert r.code == 0 and re.fullmatch(r"Request to reboot VM web1 accepted %s\.\n"
                                        % REQ.replace("\\(", "\\(").replace("\\)", "\\)"),
                                        r.out), r
    assert cloud.calls[-1][2] is False
    vm_id = run("vm", "show", "web1", "-f", "json", cloud=cloud).json()["vm"]["id"]
    # Not waited for, yet carried out: its action ends in success. Waited
    # for here (not slept), so that the delete below does not overtake it.
    wait_for(lambda: newest_action(cloud.db, vm_id) == ("reboot", "success"), 30,
             what="the soft reboot to finish")
    r = run("vm", "delete", "web1", "--wait", cloud=cloud)
    assert r.code == 0 and r.out == "VM web1 deleted.\n", r
    assert r.err.splitlines()[-1].endswith("web1: deleted")
    assert run("vm", "show", vm_id, cloud=cloud).code == 1
    # The timeline outlives the VM, by id.
    r = run("vm", "actions", vm_id, cloud=cloud)
    assert r.code == 0, r
    actions = [row[1] for row in table_rows(r.out)[1:]]
    assert actions[0] == "delete" and actions[-1] == "create" and "reboot_hard" in actions


def newest_action(db, instance_id):
    with db.transaction() as s:
        action = actions.action_list(s, instance_id)[0]
        return action.action, action.result


def test_failed_action_wait_exits_3(cloud):
    assert run("vm", "create", "flaky1", "--image", "blank", "--flavor", "m1.tiny", "--wait",
               cloud=cloud).code == 0
    r = run("vm", "stop", "flaky1", "--wait", cloud=cloud)
    assert r.code == 3, r
    assert re.search(r"error: stop of VM flaky1 failed: the guest ignored the ACPI shutdown "
                     r"\(now ACTIVE\) %s" % REQ, r.err), r


def test_progress_on_a_terminal_is_one_updating_line():
    from mininova_client.wait import Progress
    stream = io.StringIO()
    p = Progress("web1", stream, tty=True)
    p.update("BUILD", "scheduling")
    p.update("BUILD", "spawning", "scheduled")
    p.update("ACTIVE", None, "reported")
    p.end()
    text = stream.getvalue()
    assert text.count("\r\x1b[K") == 3 and text.count("\n") == 1
    assert text.endswith("web1: ACTIVE, step: reported [0s]\n")


class ScriptedClient:
    """Answers GET /v1/vms/<id> from a script: VM dicts, or exceptions to raise."""

    def __init__(self, *script):
        self.script = list(script)

    def get(self, path):
        if "/actions/" in path:
            return {"action": {"result": None, "events": [{"event": "spawned"}]}}
        item = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(item, Exception):
            raise item
        return {"vm": item}


def _vm(status, task=None):
    return {"id": "i1", "name": "web1", "status": status, "task_state": task, "fault": None}


def test_wait_retries_while_the_api_is_unavailable():
    from mininova_client.api import APIError, ConnectError
    from mininova_client.wait import wait_vm
    stream = io.StringIO()
    client = ScriptedClient(_vm("BUILD", "spawning"), ConnectError("http://x", "refused"),
                            APIError(503, "database unreachable", "req-1"), _vm("ACTIVE"))
    vm = wait_vm(client, _vm("BUILD"), "create", "req-0", timeout=5, stream=stream, tty=False,
                 sleep=lambda s: None)
    assert vm["status"] == "ACTIVE"
    lines = [line.split("] ", 1)[1] for line in stream.getvalue().splitlines()]
    assert lines == [
        "web1: BUILD (spawning), step: spawned",
        "web1: API unavailable, retrying (cannot connect to http://x: refused)",
        "web1: API unavailable, retrying (error 503: database unreachable (request req-1))",
        "web1: ACTIVE, step: spawned"]
    # Down until the deadline: its own error (exit 5), not a timeout.
    with pytest.raises(ConnectError) as e:
        wait_vm(ScriptedClient(ConnectError("http://x", "refused")), _vm("BUILD"), "create",
                timeout=0, stream=io.StringIO(), sleep=lambda s: None)
    assert e.value.code == 5
    # A 4xx is not retried.
    with pytest.raises(APIError):
        wait_vm(ScriptedClient(APIError(403, "no")), _vm("BUILD"), "create", timeout=5,
                stream=io.StringIO(), sleep=lambda s: None)


# -- actions, console -----------------------------------------------------------

def test_actions_and_console(cloud):
    r = run("vm", "create", "web1", "--image", "blank", "--flavor", "m1.tiny", "--wait",
            "-f", "json", cloud=cloud)
    assert r.code == 0, r
    r = run("vm", "actions", "web1", "-f", "json", cloud=cloud)
    create, = r.json()["actions"]
    assert create["action"] == "create" and create["result"] == "success"
    r = run("vm", "actions", "web1", create["request_id"], cloud=cloud)
    assert r.code == 0, r
    action_table, events_table = r.out.split("\n\n")
    assert fields(action_table)["request_id"] == create["request_id"]
    events = [row[0] for row in table_rows(events_table)[1:]]
    assert events == ["accepted", "scheduled", "spawned", "reported"][:len(events)]
    assert events[0] == "accepted" and events[-1] == "reported"
    r = run("vm", "actions", "web1", "req-nope", cloud=cloud)
    assert r.code == 1 and r.err.startswith("error 404: ")
    r = run("vm", "console", "web1", "--lines", "3", cloud=cloud)
    assert r.code == 0 and r.out == "boot line 0\nboot line 1\nboot line 2\n"
    r = run("vm", "console", "web1", "--lines", "0", cloud=cloud)
    assert r.code == 1 and "lines" in r.err


# -- images, flavors, hosts, services, groups, quotas ------------------------------

def test_images(cloud, db, tmp_path):
    data = b"QFI\xfb" + bytes(range(256)) * 4096  # 1 MiB, streamed
    path = tmp_path / "up.qcow2"
    path.write_bytes(data)
    r = run("image", "add", "up", str(path), "--min-ram", "64", "--min-disk", "1", cloud=cloud)
    assert r.code == 0, r
    import hashlib
    shown = fields(r.out)
    assert shown["checksum"] == hashlib.sha256(data).hexdigest()
    assert (shown["size"], shown["min_ram"], shown["min_disk"]) == (str(len(data)), "64", "1")
    names = [row[1] for row in table_rows(run("image", "list", cloud=cloud).out)[1:]]
    assert sorted(names) == ["blank", "up"]
    assert run("image", "show", "up", "-f", "json", cloud=cloud).json()["image"]["size"] == len(data)
    assert run("image", "add", "up", str(path), cloud=cloud).code == 0  # names may repeat
    r = run("image", "show", "up", cloud=cloud)
    assert r.code == 1 and r.err.startswith("error 409: ") and "request req-" in r.err
    r = run("image", "add", "x", str(tmp_path / "nope.qcow2"), cloud=cloud)
    assert r.code == 2 and "nope.qcow2" in r.err
    r = run("image", "add", "y", str(path), cloud=cloud,
            env={"MININOVA_TOKEN": token_for(db, "default")})
    assert r.code == 1 and r.err.startswith("error 403: ")


def test_hosts_and_services(cloud, db):
    from common import context
    cloud.conductor.service_heartbeat(context.get_admin_context(), "h1", "mininova-compute",
                                      {"vcpus": 2, "memory_mb": 1000, "local_gb": 10})
    r = run("host", "list", cloud=cloud)
    assert r.code == 0, r
    header, row = table_rows(r.out)
    assert row[:3] == ["h1", "up", "enabled"] and row[header.index("RAM MB")] == "0/1500"
    r = run("host", "show", "h1", cloud=cloud)
    assert fields(r.out)["memory_mb"] == "0/1500 used (total 1000 x 1.5, 1500 free)"
    assert run("host", "show", "nope", cloud=cloud).code == 1
    r = run("service", "disable", "h1", "--reason", "maintenance", cloud=cloud)
    assert r.code == 0, r
    assert fields(r.out)["status"] == "disabled"
    assert fields(r.out)["disabled_reason"] == "maintenance"
    svc_id = fields(r.out)["id"]
    row = table_rows(run("service", "list", cloud=cloud).out)[1]
    assert row[:5] == [svc_id, "mininova-compute", "h1", "disabled", "up"]
    assert row[-1] == "maintenance"
    r = run("service", "enable", svc_id, "-f", "json", cloud=cloud)
    assert r.code == 0 and r.json()["service"]["status"] == "enabled"
    r = run("service", "disable", "nohost", cloud=cloud)
    assert r.code == 1 and "no compute service on host nohost" in r.err
    r = run("service", "list", cloud=cloud, env={"MININOVA_TOKEN": token_for(db, "default")})
    assert r.code == 1 and r.err.startswith("error 403: This needs the admin role.")


def test_server_groups(cloud):
    r = run("server-group", "create", "web", "--policy", "anti-affinity", cloud=cloud)
    assert r.code == 0 and fields(r.out)["policy"] == "anti-affinity", r
    r = run("vm", "create", "w1", "--image", "blank", "--flavor", "m1.tiny", "--group", "web",
            cloud=cloud)
    assert r.code == 0, r
    assert table_rows(run("server-group", "list", cloud=cloud).out)[1][1:] == [
        "web", "anti-affinity", "1"]
    group = run("server-group", "show", "web", "-f", "json", cloud=cloud).json()
    assert len(group["server_group"]["members"]) == 1
    r = run("server-group", "delete", "web", cloud=cloud)
    assert r.code == 0 and r.out == "Server group web deleted.\n"
    assert run("server-group", "show", "web", cloud=cloud).code == 1


def test_quotas(cloud, db):
    r = run("quota", "show", "default", cloud=cloud)
    assert r.code == 0, r
    assert fields(r.out)["instances"] == "0 used of 10"
    r = run("quota", "set", "default", "--instances", "1", "--ram", "-1", cloud=cloud)
    assert r.code == 0, r
    assert fields(r.out)["instances"] == "0 used of 1" and fields(r.out)["ram"] == "0 used of unlimited"
    assert run("quota", "set", "default", cloud=cloud).code == 2
    assert run("vm", "create", "q1", "--image", "blank", "--flavor", "m1.tiny",
               cloud=cloud).code == 0
    r = run("vm", "create", "q2", "--image", "blank", "--flavor", "m1.tiny", cloud=cloud)
    assert r.code == 1 and r.err.startswith("error 403: Quota exceeded for instances")
    # Without a project: $MININOVA_PROJECT, else the caller's own (from its VMs).
    assert fields(run("quota", "show", cloud=cloud).out)["project_id"] == "default"
    member = token_for(db, "team")
    r = run("quota", "show", cloud=cloud, env={"MININOVA_TOKEN": member})
    assert r.code == 2 and "MININOVA_PROJECT" in r.err
    r = run("quota", "show", "-f", "json", cloud=cloud,
            env={"MININOVA_TOKEN": member, "MININOVA_PROJECT": "team"})
    assert r.code == 0 and r.json()["quota"]["limits"]["instances"] == 10
    r = run("quota", "show", "default", cloud=cloud, env={"MININOVA_TOKEN": member})
    assert r.code == 1 and r.err.startswith("error 403: ")


def test_table_format():
    from mininova_client.format import table
    out = io.StringIO()
    table(["A", "Long header"], [["x" * 12, None], ["two\nlines", [1, 2]]], out)
    lines = out.getvalue().splitlines()
    assert len({len(line) for line in lines}) == 1
    assert lines[1] == "| A            | Long header |"
    assert lines[3] == "| xxxxxxxxxxxx | None        |"
    assert lines[4:6] == ["| two          | 1, 2        |", "| lines        |             |"]
