"""The build as the conductor orchestrates it: the API casts build_instances
to the conductor, whose build task calls the scheduler's select_destinations
(placement only) and casts build_instance to the chosen compute host; over
the in-memory RPC transport, with the real managers."""
import json
import uuid

import pytest

from common import context, exception, rpc, states
from common.db import actions
from common.timeline import DbSink, Timeline
from mininova_lab.waiting import wait_for
from nova_api.build_client import BuildClient
from nova_conductor import rpcapi as conductor_rpcapi
from nova_conductor.manager import ConductorManager
from nova_conductor.tasks.build import BuildTask
from nova_scheduler import rpcapi as scheduler_rpcapi
from nova_scheduler.manager import SchedulerManager
from tests.conftest import Recorder
from tests.unit.test_rpc_versions import Recording
from tests.unit.test_scheduler import add_host, add_vm, get

CTXT = context.RequestContext(project_id="p")


@pytest.fixture
def stack(conf, db):
    """Conductor and scheduler served on one in-memory transport; the
    compute host's client records the build casts."""
    transport = Recording(rpc.get_transport("memory://%s" % uuid.uuid4().hex))
    compute = Recorder()
    task = BuildTask(db, scheduler_rpcapi.SchedulerRPCAPI(transport, timeout=10), compute,
                     Timeline(DbSink(db), "conductor"))
    conductor = ConductorManager(db, task, max_attempts=2)
    scheduler = SchedulerManager(db, conductor_rpcapi.ConductorRPCAPI(transport), conf)
    servers = [rpc.RPCServer(transport.transport, rpc.Target(api.TOPIC, version=api.VERSION),
                             [manager], workers=2)
               for api, manager in ((conductor_rpcapi, conductor),
                                    (scheduler_rpcapi, scheduler))]
    for srv in servers:
        srv.start()
    stack = type("Stack", (), {})()
    stack.transport, stack.compute, stack.conductor = transport, compute, conductor
    yield stack
    for srv in servers:
        srv.stop()
    for srv in servers:
        srv.wait(timeout=5)


def create_action(db, vm):
    with db.transaction() as s:
        return actions.action_start(s, vm, CTXT.request_id, "create", "p").id


def test_api_to_conductor_to_scheduler_to_compute(stack, db):
    add_host(db, "h1")
    vm = add_vm(db)
    action_id = create_action(db, vm)
    conductor_rpcapi.ConductorRPCAPI(stack.transport).build_instances(CTXT, vm,
                                                                      action_id=action_id)
    wait_for(lambda: stack.compute.calls, 30, what="the build cast to the compute host")
    (method, args, kwargs), = stack.compute.calls
    assert (method, args[0], args[1]["id"], args[1]["host"]) == ("build_instance", "h1", vm, "h1")
    assert args[1]["task_state"] == states.SPAWNING and args[2]["name"] == "img-vm"
    assert kwargs == {"action_id": action_id}  # the action id travels with the build
    inst = get(db, vm)
    assert (inst.host, inst.task_state) == ("h1", states.SPAWNING)
    sent = [(queue, body["method"]) for queue, body in stack.transport.sent]
    assert sent[:2] == [("conductor", "build_instances"), ("scheduler", "select_destinations")]
    assert not [q for q, _ in sent if q.startswith("compute")]  # nobody else cast a build


def test_the_scheduler_answers_the_host_and_casts_nothing(conf, db):
    add_host(db, "h1")
    vm = add_vm(db)
    conductor = Recorder()
    selection = SchedulerManager(db, conductor, conf).select_destinations(CTXT, vm)
    assert selection["host"] == "h1" and selection["instance"]["id"] == vm
    assert selection["image"]["name"] == "img-vm" and conductor.calls == []
    # At-least-once: the same request again answers the same host, claims nothing more.
    assert SchedulerManager(db, conductor, conf).select_destinations(CTXT, vm)["host"] == "h1"


def test_no_valid_host_crosses_the_wire_and_ends_the_create_in_error(stack, db):
    vm = add_vm(db)
    create_action(db, vm)
    stack.conductor.build_instances(CTXT, vm)
    inst = get(db, vm)
    assert inst.vm_state == states.ERROR and inst.fault.startswith("No valid host was found.")
    assert stack.compute.calls == []
    with db.transaction() as s:
        action, events = actions.action_get(s, vm, CTXT.request_id)
    assert action.result == "error" and "no valid host" in [e.event for e in events]


def test_a_failed_build_is_built_again_through_the_conductor(stack, db):
    for h in ("h1", "h2"):
        add_host(db, h)
    vm = add_vm(db)
    stack.conductor.build_instances(CTXT, vm)
    first = get(db, vm).host
    assert stack.conductor.instance_build_failed(CTXT, vm, first, "boom")
    second = get(db, vm)
    assert second.host not in (None, first) and second.task_state == states.SPAWNING
    assert [args[0] for _, args, _ in stack.compute.calls] == [first, second.host]


def test_an_older_apis_schedule_instance_is_handed_to_the_conductor(stack, db):
    add_host(db, "h1")
    vm = add_vm(db)
    scheduler_rpcapi.SchedulerRPCAPI(stack.transport, version_cap="1.0").schedule_instance(
        CTXT, vm)
    wait_for(lambda: stack.compute.calls, 30, what="the build cast to the compute host")
    assert get(db, vm).host == "h1"
    sent = [(queue, body["method"]) for queue, body in stack.transport.sent]
    assert sent[:3] == [("scheduler", "schedule_instance"), ("conductor", "build_instances"),
                        ("scheduler", "select_destinations")]


@pytest.mark.parametrize("cap, sent", [
    (None, [("conductor", "build_instances")]),
    ("1.3", [("scheduler", "schedule_instance")]),   # conductors of the previous release
])
def test_the_api_sends_a_build_where_the_running_release_takes_it(cap, sent):
    class Sink:
        def __init__(self):
            self.sent = []

        def send(self, target, body, **kwargs):
            self.sent.append((target.queue, json.loads(body)["method"]))
    sink = Sink()
    builds = BuildClient(conductor_rpcapi.ConductorRPCAPI(sink, version_cap=cap),
                         scheduler_rpcapi.SchedulerRPCAPI(sink))
    builds.build_instances(CTXT, "vm-1", action_id=3)
    assert sink.sent == sent


def test_a_scheduler_away_puts_the_build_back_for_later(db):
    """The conductor's cast handler raises ServiceUnavailable: the RPC
    server gives the build_instances cast back to the queue (with a delay)."""
    class Away:
        def select_destinations(self, ctxt, instance_id, action_id=None):
            raise exception.MessagingTimeout(method="select_destinations",
                                             topic="scheduler", timeout=30)
    vm = add_vm(db)
    task = BuildTask(db, Away(), Recorder(), Timeline(DbSink(db), "conductor"))
    with pytest.raises(exception.ServiceUnavailable):
        task.build_instances(CTXT, vm)
    assert get(db, vm).task_state == states.SCHEDULING


def test_a_malformed_build_request_fails_where_it_arrived(conf, db):
    """Not handed on: the RPC server dead-letters what raised a TypeError."""
    conductor = Recorder()
    with pytest.raises(TypeError):
        SchedulerManager(db, conductor, conf).schedule_instance(CTXT, ["not", "an", "id"])
    with pytest.raises(TypeError):
        ConductorManager(db, Recorder()).build_instances(CTXT, {"not": "an id"})
    assert conductor.calls == []
