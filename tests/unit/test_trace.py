"""``mininova trace``: reading tapped messages, following a request or a VM,
the timeline's text and JSON lines, --until-done, where the bus address comes
from; and the ``sender`` field of the wire format."""
import argparse
import io
import json
import sys

import pytest

from common import context
from common.rpc import protocol
from mininova_client import cli
from mininova_client import trace, trace_timeline

VM = "5b1c9e2a-0000-4000-8000-000000000001"
OTHER_VM = "77777777-0000-4000-8000-000000000002"


@pytest.fixture
def sender():
    """Set this process's sender for a test, and put it back."""
    before = protocol._sender

    def set_to(service, host="ctl1"):
        protocol.set_sender(service, host)
    yield set_to
    protocol._sender = before


@pytest.fixture
def ctxt():
    return context.RequestContext(project_id="p1", user_id="u1")


def request(ctxt, method, to, sender_fn, who, received, reply=False, **args):
    sender_fn(who)
    body = protocol.encode_request(ctxt, method, args, "1.0")
    return trace_timeline.Tapped(body=body.encode(), routing_key=to, received=received,
                        correlation_id="corr-" + method if reply else None,
                        reply_to="mininova.reply.abc" if reply else None)


def reply_to(method, result, sender_fn, who, received):
    sender_fn(who)
    return trace_timeline.Tapped(body=protocol.encode_result(result).encode(),
                        routing_key="mininova.reply.abc", correlation_id="corr-" + method,
                        received=received)


def build_flow(ctxt, sender):
    """The messages of a create, as the tap sees them: the API casts the build
    to the conductor, which asks the scheduler for a host and casts the build
    to that host's compute."""
    return [
        request(ctxt, "build_instances", "conductor", sender, "api", 100.000,
                instance_id=VM),
        request(ctxt, "select_destinations", "scheduler", sender, "conductor", 100.004,
                reply=True, instance_id=VM),
        reply_to("select_destinations", {"host": "node1"}, sender, "scheduler", 100.012),
        request(ctxt, "build_instance", "compute.node1", sender, "conductor", 100.015,
                instance={"id": VM, "name": "web1"}, image={"id": "i1", "name": "tiny"}),
        request(ctxt, "instance_spawned", "conductor", sender, "compute", 102.130, reply=True,
                instance_id=VM, host="node1", power_state="running", events=[{}, {}]),
        reply_to("instance_spawned", True, sender, "conductor", 102.140),
    ]

BUILD_METHODS = ["build_instances", "select_destinations", "select_destinations",
                 "build_instance", "instance_spawned", "instance_spawned"]


# -- the wire format's sender ---------------------------------------------------

def test_sender_is_stamped_on_requests_and_replies_and_optional_for_readers(sender, ctxt):
    sender("scheduler", "node1")
    body = json.loads(protocol.encode_request(ctxt, "m", {"a": 1}, "1.0"))
    assert body["sender"] == "scheduler@node1"
    assert json.loads(protocol.encode_result(3)) == {"result": 3, "sender": "scheduler@node1"}
    assert protocol.decode_request(json.dumps(body))["method"] == "m"
    assert protocol.decode_reply(protocol.encode_result(3)) == 3
    del body["sender"]  # what an older daemon sends
    assert protocol.decode_request(json.dumps(body))["args"] == {"a": 1}
    protocol._sender = None
    assert "sender" not in json.loads(protocol.encode_request(ctxt, "m", {}, "1.0"))


# -- reading and following ------------------------------------------------------

def test_parse_requests_and_a_reply_matched_to_its_call(sender, ctxt):
    follow = trace_timeline.Follow()
    records = [trace_timeline.parse(t) for t in build_flow(ctxt, sender)]
    assert all(follow.accept(r) for r in records)
    cast, select, selected, build, call, reply = records
    assert (cast["kind"], cast["method"], cast["from"], cast["to"], cast["request_id"]) == (
        "cast", "build_instances", "api@ctl1", "conductor", ctxt.request_id)
    assert (select["kind"], select["from"], select["to"]) == (
        "call", "conductor@ctl1", "scheduler")
    assert (selected["kind"], selected["method"], selected["to"], selected["result"]) == (
        "reply", "select_destinations", "conductor@ctl1", {"host": "node1"})
    assert (build["kind"], build["from"], build["to"]) == (
        "cast", "conductor@ctl1", "compute.node1")
    assert call["kind"] == "call" and call["args"]["host"] == "node1"
    assert (reply["kind"], reply["method"], reply["from"], reply["to"],
            reply["request_id"], reply["result"]) == (
        "reply", "instance_spawned", "conductor@ctl1", "compute@ctl1", ctxt.request_id, True)


def test_follow_a_request_keeps_its_messages_and_replies_only(sender, ctxt):
    other = context.RequestContext()
    flow = build_flow(ctxt, sender)
    noise = [request(other, "service_heartbeat", "conductor", sender, "compute", 100.01,
                     host="node1", binary="mininova-compute", resources={})]
    follow = trace_timeline.Follow(request_id=ctxt.request_id)
    kept = [r for r in map(trace_timeline.parse, noise + flow) if follow.accept(r)]
    assert [r["method"] for r in kept] == BUILD_METHODS
    assert kept[-1]["kind"] == "reply"


def test_follow_a_vm_matches_its_id_anywhere_in_the_arguments(sender, ctxt):
    admin = context.get_admin_context()
    messages = build_flow(ctxt, sender) + [
        request(admin, "instance_power_sync", "conductor", sender, "compute", 103.0,
                instance_id=OTHER_VM, host="node1", power_state="running"),
        request(admin, "audit_fix", "compute.node1", sender, "api", 104.0,
                instance_ids=[OTHER_VM, VM])]
    follow = trace_timeline.Follow(vm_id=VM)
    kept = [r["method"] for r in map(trace_timeline.parse, messages) if follow.accept(r)]
    assert kept == BUILD_METHODS + ["audit_fix"]


def test_dead_letters_and_unreadable_bodies_are_shown_not_fatal(sender, ctxt):
    dead = request(ctxt, "bogus", "compute.node1", sender, "api", 1.0, instance_id=VM)
    dead.exchange, dead.routing_key = trace_timeline.DLX, "compute.node1"
    dead.headers = {"x-death": [{"queue": "compute.node1", "reason": "rejected"}]}
    rec = trace_timeline.parse(dead)
    assert (rec["kind"], rec["method"], rec["to"]) == ("dead", "bogus", "compute.node1")
    for body in (b"\xff\xfe not utf-8", b"[1, 2]", b"{not json"):
        rec = trace_timeline.parse(trace_timeline.Tapped(body=body, routing_key="scheduler", received=1.0))
        assert rec["kind"] == "unreadable"
        assert "unreadable" in trace_timeline.Timeline().line(rec)


# -- the timeline -----------------------------------------------------------------

def test_timeline_lines_show_time_route_method_key_arguments_and_request(sender, ctxt):
    out = io.StringIO()
    timeline = trace_timeline.Timeline("table", out)
    follow = trace_timeline.Follow()
    for rec in map(trace_timeline.parse, build_flow(ctxt, sender)):
        follow.accept(rec)
        timeline.write(rec)
    lines = out.getvalue().splitlines()
    assert len(lines) == 6
    assert lines[0].startswith("+     0 ms  ")
    assert "api@ctl1 → conductor" in lines[0] and "cast build_instances" in lines[0]
    assert "vm=5b1c9e2a" in lines[0] and "v1.0" in lines[0]
    assert lines[0].endswith(ctxt.request_id)
    assert "conductor@ctl1 → scheduler" in lines[1] and "call select_destinations" in lines[1]
    assert "scheduler@ctl1 → conductor@ctl1" in lines[2]
    assert "reply select_destinations" in lines[2]
    assert lines[3].startswith("+    15 ms")
    assert "conductor@ctl1 → compute.node1" in lines[3]
    assert "vm=5b1c9e2a(web1)" in lines[3] and "image=tiny" in lines[3]
    assert "call instance_spawned" in lines[4] and "host=node1" in lines[4]
    assert "power=running" in lines[4] and "events=2" in lines[4]
    assert lines[5].startswith("+  2140 ms")
    assert "conductor@ctl1 → compute@ctl1" in lines[5]
    assert "reply instance_spawned" in lines[5] and "result=true" in lines[5]


def test_json_lines_carry_everything(sender, ctxt):
    out = io.StringIO()
    timeline = trace_timeline.Timeline("json", out)
    follow = trace_timeline.Follow()
    for rec in map(trace_timeline.parse, build_flow(ctxt, sender)):
        follow.accept(rec)
        timeline.write(rec)
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["t_ms"] for r in rows] == [0, 4, 12, 15, 2130, 2140]
    assert rows[3]["args"]["instance"] == {"id": VM, "name": "web1"}
    assert rows[3]["from"] == "conductor@ctl1" and rows[3]["to"] == "compute.node1"
    assert rows[5]["kind"] == "reply" and rows[5]["result"] is True
    assert all(r["request_id"] == ctxt.request_id for r in rows)
    assert rows[0]["time"].endswith("+00:00")


def test_failure_reply_and_long_arguments_are_shortened(sender, ctxt):
    follow = trace_timeline.Follow()
    call = trace_timeline.parse(request(ctxt, "instance_build_failed", "conductor", sender, "compute",
                               1.0, reply=True, instance_id=VM, host="n",
                               reason="x" * 300))
    follow.accept(call)
    sender("scheduler")
    failure = trace_timeline.parse(trace_timeline.Tapped(
        body=protocol.encode_failure(ValueError("boom")).encode(),
        routing_key="mininova.reply.abc", correlation_id="corr-instance_build_failed",
        received=1.1))
    follow.accept(failure)
    line = trace_timeline.Timeline().line(call)
    assert "reason=" + "x" * 49 + "…" in line and "x" * 51 not in line
    assert "failure=ValueError: boom" in trace_timeline.Timeline().line(failure)


# -- --until-done -----------------------------------------------------------------

class ActionsAPI:
    """The one API call DoneWatch makes, answering from a dict."""

    def __init__(self, finished):
        self.finished = finished
        self.paths = []

    def get(self, path):
        self.paths.append(path)
        return {"action": {"finish_time": "2024-01-01T00:00:00Z" if self.finished else None}}


def test_until_done_ends_on_the_spawned_reply_or_action_finish(sender, ctxt):
    watch, follow = trace_timeline.DoneWatch(), trace_timeline.Follow(vm_id=VM)
    admin = context.get_admin_context()
    for tapped in [request(admin, "instance_set_address", "conductor", sender, "compute",
                           99.0, instance_id=VM, host="n", ip_address="10.0.0.2")] \
            + build_flow(ctxt, sender)[:5]:
        rec = trace_timeline.parse(tapped)
        follow.accept(rec)
        watch.see(rec)
    # The first API cast names the action, not the periodic message before it.
    assert watch.request_id == ctxt.request_id and not watch.done
    rec = trace_timeline.parse(reply_to("instance_spawned", False, sender, "scheduler", 103.0))
    follow.accept(rec)
    watch.see(rec)
    assert not watch.done  # "no longer spawning here": not the end of this create
    stop = context.RequestContext()
    watch = trace_timeline.DoneWatch(stop.request_id)
    rec = trace_timeline.parse(request(stop, "action_finish", "conductor", sender, "compute", 5.0,
                              instance_id=VM, result="success"))
    watch.see(rec)
    assert watch.done


def test_until_done_asks_the_api_when_no_message_ends_the_action(sender, ctxt):
    watch = trace_timeline.DoneWatch()
    watch.see(trace_timeline.parse(build_flow(ctxt, sender)[0]))
    assert not watch.check_api(None)
    api = ActionsAPI(finished=False)
    assert not watch.check_api(api)
    api.finished = True
    assert watch.check_api(api) and watch.done
    assert api.paths[-1] == "/v1/vms/%s/actions/%s" % (VM, ctxt.request_id)


# -- where the bus is -------------------------------------------------------------

def options(**kw):
    values = {"transport_url": None, "config_file": None}
    values.update(kw)
    return argparse.Namespace(**values)


def test_transport_url_from_option_environment_or_config_file(tmp_path, monkeypatch):
    monkeypatch.delenv("MININOVA_TRANSPORT_URL", raising=False)
    monkeypatch.delenv("MININOVA_CONFIG", raising=False)
    conf = tmp_path / "mininova.conf"
    conf.write_text("[DEFAULT]\nhost = h\ntransport_url = rabbit://u:pw@10.0.0.1:5672/v\n"
                    "[database]\nconnection = x\n")
    assert trace.transport_url(options(config_file=str(conf))) == \
        "rabbit://u:pw@10.0.0.1:5672/v"
    monkeypatch.setenv("MININOVA_CONFIG", str(conf))
    assert trace.transport_url(options()).endswith("@10.0.0.1:5672/v")
    monkeypatch.setenv("MININOVA_TRANSPORT_URL", "rabbit://e:e@env:5672/")
    assert trace.transport_url(options()) == "rabbit://e:e@env:5672/"
    assert trace.transport_url(options(transport_url="amqp://o@opt/")) == "amqp://o@opt/"
    monkeypatch.delenv("MININOVA_TRANSPORT_URL")
    with pytest.raises(trace.CLIError) as err:
        trace.transport_url(options(config_file=str(tmp_path / "missing.conf")))
    assert "missing.conf" in err.value.message and err.value.code == 2
    assert trace.redact("rabbit://mininova:s3cret@h:5672/") == "rabbit://mininova:***@h:5672/"
    assert trace.redact("memory://") == "memory://"


@pytest.mark.parametrize("argv, expected", [
    (["trace", "req-1", "--vm", "web1"], "not both"),
    (["trace", "--until-done"], "--until-done needs a REQUEST_ID or --vm"),
    (["trace", "--vm", "web1"], "--vm needs the API"),
    (["trace", "req-1", "--timeout", "0"], "--timeout must be a positive"),
    (["trace", "req-1", "--transport-url", "memory://"], "only rabbit://"),
])
def test_usage_errors_exit_2_with_a_clear_message(argv, expected, capsys, monkeypatch):
    monkeypatch.delenv("MININOVA_URL", raising=False)
    monkeypatch.delenv("MININOVA_TOKEN", raising=False)
    assert cli.main(argv) == 2
    assert expected in capsys.readouterr().err


def test_without_kombu_the_trace_says_what_it_needs(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "kombu", None)  # import kombu -> ImportError
    assert cli.main(["trace", "--transport-url", "rabbit://guest:guest@127.0.0.1:1/"]) == 1
    assert "needs the Python package kombu" in capsys.readouterr().err
