"""GET /compute/v2.1/servers/{id}/os-instance-actions[/{request_id}]:
exactly tempest 47's v2_1 keys, Nova's names and results, newest first."""
import datetime
import uuid

from tempest.lib.api_schema.response.compute.v2_1 import servers as schemas

from common import states
from common.db import actions
from common.db import api as db_api
from tests.unit.compute_surface import admin, app, fault, member, other  # noqa: F401
from tests.unit.test_compute_tempest_schemas import check

T0 = datetime.datetime(2026, 1, 2, 3, 4, 5, 123456)


def add_server(db, project="p1"):
    with db.transaction() as s:
        return db_api.instance_insert(
            s, name="vm1", project_id=project, user_id="u", image_id="i", flavor_id="1",
            vcpus=1, memory_mb=128, root_gb=1, vm_state=states.ACTIVE, host="node1")["id"]


def record(db, server, request_id, action, start, result=None, events=(), project="p1"):
    with db.transaction() as s:
        actions.action_start(s, server, request_id, action, project, "u", start_time=start)
        for name, res, details in events:
            actions.event_record(s, server, request_id, name, "node1", start,
                                 start + datetime.timedelta(seconds=1), res, details)
        if result:
            actions.action_finish(s, server, request_id, result, "it failed"
                                  if result == actions.ERROR else None,
                                  finish_time=start + datetime.timedelta(seconds=2))


def server_with_history(db):
    server = add_server(db)
    record(db, server, "req-create", "create", T0, actions.SUCCESS,
           [("accepted", actions.SUCCESS, None), ("spawned", actions.SUCCESS, "on node1")])
    record(db, server, "req-reboot", "reboot_hard", T0 + datetime.timedelta(minutes=1),
           actions.ERROR, [("rebooted", actions.ERROR, "libvirt: boom")])
    return server


def test_list_newest_first_with_novas_names(db, member):
    server = server_with_history(db)
    body = check(schemas.list_instance_actions,
                 member.get("/servers/%s/os-instance-actions" % server))
    listed = body["instanceActions"]
    assert [a["action"] for a in listed] == ["reboot", "create"]
    assert listed[1] == {"action": "create", "instance_uuid": server,
                         "request_id": "req-create", "user_id": "u", "project_id": "p1",
                         "start_time": "2026-01-02T03:04:05.123456", "message": None}
    assert listed[0]["message"] == "it failed"


def test_show_with_events_and_results(db, member):
    server = server_with_history(db)
    body = check(schemas.show_instance_action,
                 member.get("/servers/%s/os-instance-actions/req-create" % server))
    action = body["instanceAction"]
    assert action["action"] == "create" and action["request_id"] == "req-create"
    assert [(e["event"], e["result"]) for e in action["events"]] == [
        ("accepted", "Success"), ("spawned", "Success")]
    assert action["events"][0] == {"event": "accepted",
                                   "start_time": "2026-01-02T03:04:05.123456",
                                   "finish_time": "2026-01-02T03:04:06.123456",
                                   "result": "Success"}


def test_traceback_only_for_admins(db, member, admin):
    server = server_with_history(db)
    path = "/servers/%s/os-instance-actions/req-reboot" % server
    event, = check(schemas.show_instance_action, member.get(path))["instanceAction"]["events"]
    assert event["result"] == "Error" and "traceback" not in event
    action = check(schemas.show_instance_action, admin.get(path))["instanceAction"]
    assert action["action"] == "reboot"
    assert action["events"][0]["traceback"] == "libvirt: boom"


def test_unfinished_event_has_nulls(db, member):
    server = add_server(db)
    with db.transaction() as s:
        actions.action_start(s, server, "req-stop", "stop", "p1", "u", start_time=T0)
        actions.event_record(s, server, "req-stop", "powering off", "node1", T0)
    event, = check(schemas.show_instance_action, member.get(
        "/servers/%s/os-instance-actions/req-stop" % server))["instanceAction"]["events"]
    assert event["finish_time"] is None and event["result"] is None


def test_actions_without_a_user_request_are_not_listed(db, member):
    server = add_server(db)
    with db.transaction() as s:  # a step that arrived without its action
        actions.event_record(s, server, "req-sync", "power state synced", "node1", T0,
                             project_id="p1")
    body = check(schemas.list_instance_actions,
                 member.get("/servers/%s/os-instance-actions" % server))
    assert body == {"instanceActions": []}


def test_a_hard_reboot_through_the_api_lists_as_reboot(db, member):
    """tempest's test_list_instance_actions: exactly create and reboot."""
    server = add_server(db)
    record(db, server, "req-create", "create", T0, actions.SUCCESS)
    assert member.post("/servers/%s/action" % server,
                       {"reboot": {"type": "HARD"}}).status_code == 202
    body = check(schemas.list_instance_actions,
                 member.get("/servers/%s/os-instance-actions" % server))
    assert sorted(a["action"] for a in body["instanceActions"]) == ["create", "reboot"]


def test_unknown_request_id_server_or_project_is_404(db, member, other, admin):
    server = server_with_history(db)
    fault(member.get("/servers/%s/os-instance-actions/req-nope" % server), 404)
    fault(member.get("/servers/%s/os-instance-actions" % uuid.uuid4()), 404)
    fault(member.get("/servers/vm1/os-instance-actions"), 404)
    fault(other.get("/servers/%s/os-instance-actions" % server), 404)
    fault(other.get("/servers/%s/os-instance-actions/req-create" % server), 404)
    check(schemas.show_instance_action,
          admin.get("/servers/%s/os-instance-actions/req-create" % server))


def test_a_deleted_servers_actions_stay_readable_by_id(db, member, other):
    server = server_with_history(db)
    with db.transaction() as s:
        db_api.instance_soft_delete(s, server)
    body = check(schemas.list_instance_actions,
                 member.get("/servers/%s/os-instance-actions" % server))
    assert len(body["instanceActions"]) == 2
    fault(other.get("/servers/%s/os-instance-actions" % server), 404)
