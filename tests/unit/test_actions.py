"""The per-VM action timeline: DB functions, Timeline helper, conductor
endpoints, and the two API endpoints."""
import datetime
import uuid

import pytest

import sqlalchemy as sa

from common import context, exception, rpc, states
from common.db import actions
from common.db import api as db_api
from common.db.models import InstanceAction, InstanceActionEvent
from common.rpc import memory_transport
from common.timeline import DbSink, Timeline
from nova_api.app import create_app
from nova_conductor import rpcapi
from nova_conductor.manager import ConductorManager
from tests.unit.conftest import auth_headers
from mininova_lab.waiting import wait_for

T0 = datetime.datetime(2024, 5, 1, 12, 0, 0)


def ms(n):
    return datetime.timedelta(milliseconds=n)


def ctxt(project="p", request_id=None):
    return context.RequestContext(request_id=request_id, project_id=project, user_id="u")


def add_vm(db, name="vm", project="p"):
    with db.transaction() as s:
        inst = db_api.instance_create(s, name=name, project_id=project, user_id="u",
                                      image_id=str(uuid.uuid4()), flavor_id="1", vcpus=1,
                                      memory_mb=128, root_gb=1, vm_state=states.BUILDING,
                                      task_state=states.SCHEDULING)
    return inst.id


# -- common.db.actions ---------------------------------------------------------

def test_action_start_is_idempotent(db):
    vm = add_vm(db)
    with db.transaction() as s:
        a = actions.action_start(s, vm, "req-1", "create", "p", "u", start_time=T0)
    with db.transaction() as s:  # the same request again (at-least-once)
        b = actions.action_start(s, vm, "req-1", "create", "p", "u", start_time=T0 + ms(50))
        assert b.id == a.id and b.start_time == T0
        assert s.scalar(sa.select(sa.func.count()).select_from(InstanceAction)) == 1


def test_duplicate_start_in_one_transaction_does_not_abort_it(db):
    vm = add_vm(db)
    with db.transaction() as s:
        a = actions.action_start(s, vm, "req-1", "create", "p")
        b = actions.action_start(s, vm, "req-1", "create", "p")
        assert a.id == b.id
        db_api.instance_update_if(s, vm, {"task_state": None})  # the transaction goes on
    with db.transaction() as s:
        assert db_api.instance_get(s, vm).task_state is None


def test_events_in_start_order_with_durations(db):
    vm = add_vm(db)
    with db.transaction() as s:
        actions.action_start(s, vm, "req-1", "create", "p", "u", start_time=T0)
        # recorded out of order (different daemons), listed in start order
        actions.event_record(s, vm, "req-1", "domain started", "h1", T0 + ms(300),
                             T0 + ms(450), "success")
        actions.event_record(s, vm, "req-1", "accepted", "api", T0, T0, "success")
        actions.event_record(s, vm, "req-1", "scheduled", "sch", T0 + ms(10), T0 + ms(25),
                             "success", "on host h1")
        actions.action_finish(s, vm, "req-1", "success", finish_time=T0 + ms(500))
    with db.transaction() as s:
        action, events = actions.action_get(s, vm, "req-1")
    assert [e.event for e in events] == ["accepted", "scheduled", "domain started"]
    assert events[1].details == "on host h1"
    assert action.result == "success" and action.finish_time == T0 + ms(500)


def test_redelivered_event_is_stored_once(db):
    vm = add_vm(db)
    for _ in range(2):
        with db.transaction() as s:
            actions.event_record(s, vm, "req-1", "disk cloned", "h1", T0, T0 + ms(5), "success")
    with db.transaction() as s:
        assert len(actions.action_get(s, vm, "req-1")[1]) == 1


def test_event_before_action_creates_it_then_start_names_it(db):
    vm = add_vm(db)
    with db.transaction() as s:
        actions.event_record(s, vm, "req-9", "image fetched", "h1", T0 + ms(100))
    with db.transaction() as s:
        action, events = actions.action_get(s, vm, "req-9")
        assert action.action == "unknown" and action.project_id == "p"  # from the VM row
        assert len(events) == 1 and events[0].finish_time is None
    with db.transaction() as s:
        actions.action_start(s, vm, "req-9", "create", "p", "u", start_time=T0)
    with db.transaction() as s:
        action, _ = actions.action_get(s, vm, "req-9")
        assert action.action == "create" and action.start_time == T0


def test_first_finish_wins(db):
    vm = add_vm(db)
    with db.transaction() as s:
        actions.action_start(s, vm, "req-1", "create", "p", start_time=T0)
        actions.action_finish(s, vm, "req-1", "error", "No valid host", finish_time=T0 + ms(9))
        actions.action_finish(s, vm, "req-1", "error", finish_time=T0 + ms(99))
        actions.action_finish(s, vm, "req-1", "success", finish_time=T0 + ms(999))
        action, _ = actions.action_get(s, vm, "req-1")
    assert (action.result, action.message, action.finish_time) == (
        "error", "No valid host", T0 + ms(9))
    with db.transaction() as s:
        actions.action_finish(s, vm, "req-2", "success", finish_time=T0)  # never started
        action, _ = actions.action_get(s, vm, "req-2")
    assert (action.action, action.result, action.project_id) == ("unknown", "success", "p")


def test_list_newest_first_and_missing_action(db):
    vm, other = add_vm(db), add_vm(db, "other")
    with db.transaction() as s:
        actions.action_start(s, vm, "req-1", "create", "p", start_time=T0)
        actions.action_start(s, vm, "req-2", "stop", "p", start_time=T0 + ms(1000))
        actions.action_start(s, other, "req-3", "create", "p")
        assert [a.request_id for a in actions.action_list(s, vm)] == ["req-2", "req-1"]
        assert actions.action_list(s, vm, project_id="q") == []
        with pytest.raises(exception.NotFound, match="Action req-x of VM %s" % vm):
            actions.action_get(s, vm, "req-x")


def test_events_go_with_their_action(db):
    vm = add_vm(db)
    with db.transaction() as s:
        actions.event_record(s, vm, "req-1", "accepted")
    with db.transaction() as s:
        s.execute(sa.delete(InstanceAction))
    with db.transaction() as s:  # ON DELETE CASCADE
        assert s.scalar(sa.select(sa.func.count()).select_from(InstanceActionEvent)) == 0


def test_parse_time():
    assert actions.parse_time("2024-05-01T12:00:00.250000Z") == T0 + ms(250)
    assert actions.parse_time("2024-05-01T14:00:00+02:00") == T0
    assert actions.parse_time(actions.format_time(T0 + ms(7))) == T0 + ms(7)
    assert actions.parse_time(None) is None


def test_models_match_migration(db):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from common.db.models import Base
    ours = {"instance_actions", "instance_action_events"}
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    def table_of(d):
        item = d[0] if isinstance(d, list) else d
        kind = item[0]
        if kind in ("add_table", "remove_table"):
            return item[1].name
        if kind in ("add_column", "remove_column") or kind.startswith("modify_"):
            return item[2]
        return getattr(getattr(item[1], "table", None), "name", None)
    assert [d for d in diff if table_of(d) in ours] == []


# -- common.timeline -----------------------------------------------------------

def test_timeline_step_success_and_error(db):
    vm = add_vm(db)
    c = ctxt()
    tl = Timeline(DbSink(db), "h1")
    tl.start_action(c, vm, "create")
    tl.record(c, vm, "accepted")
    with tl.step(c, vm, "disk cloned") as step:
        step.details = "10 GB"
    with pytest.raises(exception.HypervisorError):
        with tl.step(c, vm, "domain started", details="qemu"):
            raise exception.HypervisorError(reason="no KVM")
    with pytest.raises(ZeroDivisionError):
        with tl.step(c, vm, "reported"):
            1 / 0
    tl.finish(c, vm, "error", "Hypervisor error: no KVM")
    with db.transaction() as s:
        action, events = actions.action_get(s, vm, c.request_id)
    assert action.action == "create" and action.result == "error"
    assert action.user_id == "u" and action.project_id == "p"
    assert [(e.event, e.host, e.result, e.details) for e in events] == [
        ("accepted", "h1", "success", None),
        ("disk cloned", "h1", "success", "10 GB"),
        ("domain started", "h1", "error", "qemu: Hypervisor error: no KVM"),
        ("reported", "h1", "error", "ZeroDivisionError: division by zero"),
    ]
    assert all(e.finish_time >= e.start_time for e in events)


def test_timeline_swallows_recording_errors(recorder):
    tl = Timeline(recorder(fail_with=exception.ServiceUnavailable(reason="broker down")), "h1")
    c = ctxt()
    with tl.step(c, "vm", "disk cloned"):
        pass
    tl.record(c, "vm", "accepted")
    tl.finish(c, "vm", "success")
    tl.start_action(c, "vm", "create")  # the sink has no action_start at all: still fine
    with pytest.raises(KeyError):  # the real work's error still propagates
        with tl.step(c, "vm", "x"):
            raise KeyError("k")


def test_timeline_passes_iso_times_to_the_sink(recorder):
    sink = recorder()
    tl = Timeline(sink, "h1")
    with tl.step(ctxt(), "vm", "image fetched"):
        pass
    (method, args, _), = sink.calls
    assert method == "action_event"
    instance_id, event, host, start, finish, result, details = args
    assert (instance_id, event, host, result, details) == ("vm", "image fetched", "h1",
                                                           "success", None)
    assert start.endswith("Z") and actions.parse_time(finish) >= actions.parse_time(start)


# -- conductor -----------------------------------------------------------------

def test_conductor_endpoints(db):
    vm = add_vm(db)
    c = ctxt(request_id="req-c")
    conductor = ConductorManager(db)
    conductor.action_event(c, vm, "domain defined", "h1", "2024-05-01T12:00:00.000000Z",
                           "2024-05-01T12:00:00.040000Z", "success", "xml 2 KB")
    conductor.action_event(c, vm, "domain defined", "h1", "2024-05-01T12:00:00.000000Z",
                           "2024-05-01T12:00:00.040000Z", "success", "xml 2 KB")  # redelivery
    conductor.action_finish(c, vm, "success")
    with db.transaction() as s:
        action, events = actions.action_get(s, vm, "req-c")
    assert action.result == "success" and action.action == "unknown"
    assert [(e.event, e.start_time, e.finish_time) for e in events] == [
        ("domain defined", T0, T0 + ms(40))]


def test_conductor_rpcapi_casts_over_the_bus(db):
    transport = memory_transport.MemoryTransport()
    server = rpc.RPCServer(transport, rpc.Target(rpcapi.TOPIC, version=rpcapi.VERSION),
                           [ConductorManager(db)], workers=1)
    server.start()
    try:
        vm = add_vm(db)
        c = ctxt()
        tl = Timeline(rpcapi.ConductorRPCAPI(transport), "h1")
        with tl.step(c, vm, "image fetched", details="cache hit"):
            pass
        tl.finish(c, vm, "success")

        def done():
            with db.transaction() as s:
                try:
                    action, events = actions.action_get(s, vm, c.request_id)
                except exception.NotFound:
                    return False
                return action.result == "success" and len(events) == 1
        wait_for(done, timeout=5)
    finally:
        server.wait(timeout=5)


# -- API -----------------------------------------------------------------------

@pytest.fixture
def api(conf, db, recorder):
    client = create_app(conf, db, recorder(), recorder()).test_client()
    return client


def _timeline(db, vm, request_id, project="p"):
    with db.transaction() as s:
        actions.action_start(s, vm, request_id, "create", project, "u", start_time=T0)
        actions.event_record(s, vm, request_id, "accepted", "api-host", T0, T0, "success")
        actions.event_record(s, vm, request_id, "scheduled", "sch", T0 + ms(20), T0 + ms(35),
                             "success", "on host h1")
        actions.event_record(s, vm, request_id, "domain started", "h1", T0 + ms(100))


def test_api_list_and_show(api, db):
    vm = add_vm(db, "web1", project="p")
    _timeline(db, vm, "req-a")
    with db.transaction() as s:
        actions.action_start(s, vm, "req-b", "stop", "p", "u", start_time=T0 + ms(60000))
    hdr = auth_headers(db, "p")
    r = api.get("/v1/vms/web1/actions", headers=hdr)
    assert r.status_code == 200
    listed = r.get_json()["actions"]
    assert [a["request_id"] for a in listed] == ["req-b", "req-a"]
    assert listed[1] == {"instance_id": vm, "request_id": "req-a", "action": "create",
                         "start_time": "2024-05-01T12:00:00Z", "finish_time": None,
                         "result": None, "message": None, "user_id": "u", "project_id": "p"}

    r = api.get("/v1/vms/%s/actions/req-a" % vm, headers=hdr)
    assert r.status_code == 200
    action = r.get_json()["action"]
    assert action["action"] == "create" and action["duration_ms"] is None
    assert [(e["event"], e["host"], e["duration_ms"], e["result"]) for e in action["events"]] == [
        ("accepted", "api-host", 0, "success"),
        ("scheduled", "sch", 15, "success"),
        ("domain started", "h1", None, None),
    ]
    assert action["events"][1]["details"] == "on host h1"

    with db.transaction() as s:
        actions.action_finish(s, vm, "req-a", "success", finish_time=T0 + ms(2500))
    action = api.get("/v1/vms/web1/actions/req-a", headers=hdr).get_json()["action"]
    assert action["duration_ms"] == 2500 and action["finish_time"] == "2024-05-01T12:00:02Z"
    assert action["result"] == "success"

    r = api.get("/v1/vms/web1/actions/req-nope", headers=hdr)
    assert r.status_code == 404
    assert "req-nope" in r.get_json()["error"]["message"]


def test_api_deleted_vm_readable_by_id_only(api, db):
    vm = add_vm(db, "gone", project="p")
    _timeline(db, vm, "req-a")
    with db.transaction() as s:
        db_api.instance_soft_delete(s, vm)
    hdr = auth_headers(db, "p")
    assert api.get("/v1/vms/gone/actions", headers=hdr).status_code == 404
    r = api.get("/v1/vms/%s/actions" % vm, headers=hdr)
    assert r.status_code == 200 and [a["request_id"] for a in r.get_json()["actions"]] == ["req-a"]
    r = api.get("/v1/vms/%s/actions/req-a" % vm.upper(), headers=hdr)
    assert r.status_code == 200 and len(r.get_json()["action"]["events"]) == 3


def test_api_other_project_gets_404(api, db):
    vm = add_vm(db, "web1", project="p")
    _timeline(db, vm, "req-a")
    hdr = auth_headers(db, "q")
    assert api.get("/v1/vms/web1/actions", headers=hdr).status_code == 404
    assert api.get("/v1/vms/%s/actions" % vm, headers=hdr).status_code == 404
    assert api.get("/v1/vms/%s/actions/req-a" % vm, headers=hdr).status_code == 404
    # ... also once the VM is deleted
    with db.transaction() as s:
        db_api.instance_soft_delete(s, vm)
    assert api.get("/v1/vms/%s/actions" % vm, headers=hdr).status_code == 404
    assert api.get("/v1/vms/%s/actions/req-a" % vm, headers=hdr).status_code == 404
    # never-existing VM
    r = api.get("/v1/vms/%s/actions" % uuid.uuid4(), headers=auth_headers(db, "p"))
    assert r.status_code == 404 and "could not be found" in r.get_json()["error"]["message"]
