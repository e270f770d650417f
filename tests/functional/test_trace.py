"""``mininova trace`` on the real RabbitMQ: the tap sees casts, calls and their
replies; callers that do not ask for replies on the exchange still get them;
and on a real stack a trace started before ``POST /v1/vms`` prints the
create's timeline and ends by itself (--until-done)."""
import json
import os
import subprocess
import sys
import threading
import time
import uuid

import kombu
import pytest

from common import context, rpc
from common.rpc import kombu_transport, protocol
from mininova_client import trace, trace_timeline
from mininova_lab import services
from mininova_lab.stack import ROOT, Stack, qemu_img_create
from mininova_lab.waiting import wait_for

pytestmark = pytest.mark.real_services("rabbitmq")


@pytest.fixture
def vhost_url():
    """A private vhost: the tap sees this test's messages only."""
    vhost = "mininova-trace-" + uuid.uuid4().hex[:8]
    services.add_vhost(vhost)
    yield services.rabbit_url(vhost)
    services.delete_vhost(vhost)


class Echo:
    RPC_METHODS = frozenset({"echo", "record"})

    def echo(self, ctxt, value):
        return {"value": value}

    def record(self, ctxt, **kwargs):
        pass


@pytest.fixture
def echo_server(vhost_url):
    transport = rpc.get_transport(vhost_url)
    server = rpc.RPCServer(transport, rpc.Target("echo", server="node1"), [Echo()], workers=2)
    server.start()
    yield transport
    server.stop()
    server.wait(timeout=5)
    transport.cleanup()


@pytest.fixture
def sender():
    before = protocol._sender
    protocol.set_sender("tester", "here")
    yield "tester@here"
    protocol._sender = before


def test_tap_sees_casts_calls_and_their_replies(vhost_url, echo_server, sender):
    tap = trace.Tap(vhost_url)
    try:
        ctxt = context.RequestContext()
        client = rpc.RPCClient(echo_server, rpc.Target("echo", server="node1"), timeout=10)
        client.cast(ctxt, "record", instance_id="vm-1")
        assert client.call(ctxt, "echo", value=7) == {"value": 7}
        follow, records = trace_timeline.Follow(request_id=ctxt.request_id), []

        def three():
            for tapped in tap.poll(0.1):
                rec = trace_timeline.parse(tapped)
                if follow.accept(rec):
                    records.append(rec)
            return len(records) >= 3
        wait_for(three, 60, what="cast, call and reply on the tap")
    finally:
        tap.close()
    cast, call, reply = records
    assert (cast["kind"], cast["method"], cast["from"], cast["to"]) == (
        "cast", "record", sender, "echo.node1")
    assert (call["kind"], call["method"]) == ("call", "echo")
    assert (reply["kind"], reply["method"], reply["result"]) == ("reply", "echo", {"value": 7})
    assert reply["from"] == sender and reply["to"] == sender  # one process, both ends
    assert reply["request_id"] == ctxt.request_id


def test_caller_without_the_reply_exchange_header_still_gets_its_reply(vhost_url,
                                                                       echo_server):
    """An older caller: reply queue bound to nothing, no header. The server
    answers on the default exchange, as before."""
    conn = kombu.Connection("amqp://" + vhost_url.split("://", 1)[1])
    try:
        channel = conn.channel()
        reply_queue = kombu.Queue("old-caller-" + uuid.uuid4().hex, exclusive=True,
                                  auto_delete=True, durable=False)(channel)
        reply_queue.declare()
        kombu_transport.declare_queue(channel, "echo.node1")  # the server may still start
        body = protocol.encode_request(context.RequestContext(), "echo", {"value": "old"},
                                       "1.0")
        kombu.Producer(channel).publish(body, exchange="mininova", routing_key="echo.node1",
                                        reply_to=reply_queue.name, correlation_id="c1",
                                        content_type="application/json")
        message = wait_for(lambda: reply_queue.get(no_ack=True), 60, what="the reply")
        assert protocol.decode_reply(message.body) == {"value": "old"}
        assert message.delivery_info["exchange"] == ""
    finally:
        conn.release()


# -- on a real stack --------------------------------------------------------------

class Trace:
    """``mininova trace ...`` as a process, its output read as it comes."""

    def __init__(self, stack, *args):
        env = {k: v for k, v in os.environ.items() if not k.startswith("MININOVA_")}
        env.update(MININOVA_URL=stack.url, MININOVA_TOKEN=stack.http.headers["X-Auth-Token"])
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mininova_client.cli", "trace",
             "--config-file", stack.conf_path, *args],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.out, self.err, self._readers = [], [], []
        for stream, lines in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            reader = threading.Thread(target=lambda s=stream, l=lines: l.extend(
                iter(s.readline, "")), daemon=True)
            reader.start()
            self._readers.append(reader)

    def wait_tapping(self):
        wait_for(lambda: any(line.startswith("Tracing ") for line in self.err), 30,
                 what="the trace to tap the bus (stderr: %s)" % self.err)

    def wait(self, timeout):
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError("trace did not end; stdout: %s stderr: %s"
                                 % ("".join(self.out), "".join(self.err)))
        for reader in self._readers:  # the rest of the output
            reader.join(10)
        return code


@pytest.mark.real_services("rabbitmq", "postgresql", "libvirt", "http")
def test_trace_a_vm_create_and_delete_until_done(stack):
    name = "traced-" + uuid.uuid4().hex[:6]
    text = Trace(stack, "--vm", name, "--until-done", "--timeout", "120")
    as_json = Trace(stack, "--vm", name, "--until-done", "--timeout", "120", "-f", "json")
    text.wait_tapping()
    as_json.wait_tapping()
    started = time.monotonic()
    r = stack.post("/v1/vms", {"name": name, "image": "blank", "flavor": "m1.tiny"})
    assert r.status_code == 202, r.text
    request_id, vm_id = r.headers["X-Request-Id"], r.json()["vm"]["id"]
    assert text.wait(120) == 0, "".join(text.out + text.err) + str(stack.vm(vm_id))
    assert as_json.wait(30) == 0, "".join(as_json.out + as_json.err)
    elapsed = time.monotonic() - started
    assert stack.vm(vm_id)["status"] == "ACTIVE"

    host = stack.host
    lines = "".join(text.out)
    print(lines)
    print("create traced to its end in %.2f s" % elapsed)
    action = [line for line in text.out if line.rstrip().endswith(request_id)]

    def line_of(route, what):
        found = [line for line in action if route in line and what in line]
        assert found, "no %r / %r line in:\n%s" % (route, what, lines)
        return found[0]
    line_of("api@%s → conductor" % host, "cast build_instances")
    line_of("conductor@%s → scheduler" % host, "call select_destinations")
    line_of("scheduler@%s → conductor@%s" % (host, host), "reply select_destinations")
    assert "vm=%s(%s)" % (vm_id[:8], name) in line_of(
        "conductor@%s → compute.%s" % (host, host), "cast build_instance")
    assert "power=running" in line_of("compute@%s → conductor" % host, "call instance_spawned")
    assert "result=true" in line_of("conductor@%s → compute@%s" % (host, host),
                                    "reply instance_spawned")
    assert "service_heartbeat" not in lines  # not about this VM

    rows = [json.loads(line) for line in as_json.out]
    create = [r for r in rows if r["request_id"] == request_id]
    methods = [(r["kind"], r["method"]) for r in create]
    assert methods[:4] == [("cast", "build_instances"), ("call", "select_destinations"),
                           ("reply", "select_destinations"), ("cast", "build_instance")]
    assert methods[-2:] == [("call", "instance_spawned"), ("reply", "instance_spawned")]
    assert [r["t_ms"] for r in rows] == sorted(r["t_ms"] for r in rows)
    assert create[3]["to"] == "compute." + host and create[3]["args"]["instance"]["id"] == vm_id

    # A delete ends with compute's action_finish cast.
    delete = Trace(stack, "--vm", vm_id, "--until-done", "--timeout", "120")
    delete.wait_tapping()
    r = stack.delete("/v1/vms/" + vm_id)
    assert r.status_code == 202, r.text
    assert delete.wait(120) == 0, delete.err
    lines = "".join(delete.out)
    assert "cast terminate_instance" in lines and "call instance_terminated" in lines
    assert "cast action_finish" in lines and r.headers["X-Request-Id"] in lines
    stack.wait_gone(vm_id)


@pytest.mark.real_services("rabbitmq", "postgresql", "libvirt", "http")
def test_until_done_times_out_with_exit_4(stack):
    traced = Trace(stack, "--vm", "never-" + uuid.uuid4().hex[:6], "--until-done",
                   "--timeout", "1.5")
    assert traced.wait(30) == 4
    assert any("had not ended" in line for line in traced.err)


@pytest.mark.real_services("rabbitmq", "postgresql", "libvirt", "http")
def test_daemons_capped_by_upgrade_levels_build_a_vm_with_1_0_messages(tmp_path):
    """[upgrade_levels] at 1.0 everywhere, as during an upgrade from a 1.0
    release: every message of a create the API and the computes send is in its
    1.0 form (no action id; the API casts schedule_instance to the scheduler,
    which hands it to the conductor: schedulers and conductors of a release
    run together and talk uncapped), and the VM is built and its create's
    action finished all the same."""
    stack = Stack(tmp_path, network="", extra_conf=(
        "\n[upgrade_levels]\nscheduler = 1.0\nconductor = 1.0\ncompute = 1.0\n"))
    try:
        stack.start()
        base = os.path.join(stack.workdir, "blank.qcow2")
        qemu_img_create(base, "1G")
        stack.add_image("blank", base)
        name = "capped-" + uuid.uuid4().hex[:6]
        traced = Trace(stack, "--vm", name, "--until-done", "--timeout", "120", "-f", "json")
        traced.wait_tapping()
        r = stack.post("/v1/vms", {"name": name, "image": "blank", "flavor": "m1.tiny"})
        assert r.status_code == 202, r.text
        request_id, vm_id = r.headers["X-Request-Id"], r.json()["vm"]["id"]
        assert traced.wait(120) == 0, "".join(traced.out + traced.err)
        sent = [json.loads(line) for line in traced.out]
        sent = [(m["method"], m["version"], "action_id" in (m.get("args") or {}))
                for m in sent if m["request_id"] == request_id and m["kind"] != "reply"]
        assert ("schedule_instance", "1.0", False) in sent
        assert ("build_instance", "1.0", False) in sent
        assert ("instance_spawned", "1.0", False) in sent
        between_releases = {"build_instances", "select_destinations"}
        assert {version for method, version, _ in sent
                if method not in between_releases} == {"1.0"}, sent
        assert stack.vm(vm_id)["status"] == "ACTIVE"
        action = stack.get("/v1/vms/%s/actions/%s" % (vm_id, request_id)).json()["action"]
        assert (action["action"], action["result"]) == ("create", "success"), action
        assert {"scheduled", "reported"} <= {e["event"] for e in action["events"]}, action
        stack.delete("/v1/vms/" + vm_id)
        stack.wait_gone(vm_id)
    finally:
        stack.delete_all_vms()
        stack.stop()
