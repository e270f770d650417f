"""POST /compute/v2.1/servers/{id}/action: the power actions and the
console output, each answer checked with tempest 47's v2_1 schemas."""
import uuid

import pytest
from tempest.lib.api_schema.response.compute.v2_1 import servers as schemas

from common import states
from common.db import actions
from common.db import api as db_api
from nova_api.app import create_app
from nova_api.openstack.compute import server_actions
from tests.conftest import Recorder
from tests.unit.compute_surface import admin, fault, member, other, reader  # noqa: F401
from tests.unit.test_compute_tempest_schemas import check

CONSOLE_LOG = "".join("line %d\n" % n for n in range(1, 11))


class ConsoleCompute(Recorder):
    """A compute client whose host has CONSOLE_LOG as the console log."""

    def get_console_output(self, ctxt, host, instance_id, lines):
        self.calls.append(("get_console_output", (host, instance_id, lines), {}))
        return "".join(line + "\n" for line in CONSOLE_LOG.splitlines()[-lines:])


@pytest.fixture
def compute():
    return ConsoleCompute()


@pytest.fixture
def app(conf, db, compute):
    return create_app(conf, db, Recorder(), compute)


def add_server(db, vm_state=states.ACTIVE, project="p1", name="vm1", host="node1"):
    with db.transaction() as s:
        return db_api.instance_insert(
            s, name=name, project_id=project, user_id="u", image_id="i", flavor_id="1",
            vcpus=1, memory_mb=128, root_gb=1, vm_state=vm_state, host=host)["id"]


def action_names(db, server_id):
    with db.transaction() as s:
        return [a.action for a in actions.action_list(s, server_id)]


def task_state(db, server_id):
    with db.transaction() as s:
        return db_api.instance_get(s, server_id).task_state


@pytest.mark.parametrize("body, task", [
    ({"os-stop": None}, states.POWERING_OFF), ({"os-stop": {}}, states.POWERING_OFF),
    ({"pause": None}, states.PAUSING), ({"suspend": {}}, states.SUSPENDING),
    ({"reboot": {"type": "SOFT"}}, states.REBOOTING),
    ({"reboot": {"type": "hard"}}, states.REBOOTING_HARD),
    ({"reboot": {"type": "Hard"}}, states.REBOOTING_HARD),
])
def test_actions_of_an_active_server(db, member, compute, body, task):
    server = add_server(db)
    check(schemas.server_actions_common_schema, member.post("/servers/%s/action" % server, body))
    assert task_state(db, server) == task
    (method, args, _), = compute.calls
    assert args[0] == "node1" and args[1] == server


@pytest.mark.parametrize("vm_state, body", [
    (states.STOPPED, {"os-start": None}), (states.PAUSED, {"unpause": None}),
    (states.SUSPENDED, {"resume": {}}), (states.STOPPED, {"reboot": {"type": "HARD"}}),
])
def test_actions_from_other_states(db, member, vm_state, body):
    server = add_server(db, vm_state)
    check(schemas.server_actions_common_schema, member.post("/servers/%s/action" % server, body))


@pytest.mark.parametrize("vm_state, body", [
    (states.PAUSED, {"pause": None}), (states.ACTIVE, {"unpause": None}),
    (states.ACTIVE, {"resume": None}), (states.STOPPED, {"suspend": None}),
    (states.STOPPED, {"os-stop": None}), (states.ACTIVE, {"os-start": None}),
    (states.STOPPED, {"reboot": {"type": "SOFT"}}),
])
def test_action_not_allowed_now_is_409(db, member, compute, vm_state, body):
    server = add_server(db, vm_state)
    fault(member.post("/servers/%s/action" % server, body), 409)
    assert task_state(db, server) is None and compute.calls == []


def test_action_while_a_task_runs_is_409(db, member):
    server = add_server(db)
    member.post("/servers/%s/action" % server, {"pause": None})
    fault(member.post("/servers/%s/action" % server, {"os-stop": None}), 409)


def test_server_without_host_is_409(db, member):
    server = add_server(db, states.BUILDING, host=None)
    fault(member.post("/servers/%s/action" % server, {"os-stop": None}), 409)
    fault(member.post("/servers/%s/action" % server, {"os-getConsoleOutput": {}}), 409)


@pytest.mark.parametrize("body", [
    {"os-stop": None}, {"rebuild": {"imageRef": "x"}}, {"forceDelete": None},
    {"restore": None}, {"os-getConsoleOutput": {"length": 3}}, {"nonsense": 1},
])
def test_unknown_server_is_404_whatever_the_action(member, body):
    fault(member.post("/servers/%s/action" % uuid.uuid4(), body), 404)


def test_server_by_name_or_of_another_project_is_404(db, member, other):
    server = add_server(db)
    fault(member.post("/servers/vm1/action", {"os-stop": None}), 404)
    fault(other.post("/servers/%s/action" % server, {"os-stop": None}), 404)
    assert task_state(db, server) is None


@pytest.mark.parametrize("body", [
    {"forceDelete": None}, {"restore": None},
    {"shelve": None}, {"x" * 1000: None},
])
def test_unsupported_action_on_a_server_is_400(db, member, body):
    server = add_server(db)
    message = fault(member.post("/servers/%s/action" % server, body), 400)
    assert message.startswith("There is no such action") and len(message) < 200


@pytest.mark.parametrize("body", [
    {}, {"os-stop": None, "pause": None}, [], "os-stop", 1,
    {"os-stop": {"force": True}}, {"pause": 1}, {"pause": []}, {"resume": "yes"},
    {"reboot": None}, {"reboot": {}}, {"reboot": {"type": "WARM"}}, {"reboot": {"type": 1}},
    {"reboot": {"type": "SOFT", "x": 1}},
    {"os-getConsoleOutput": None}, {"os-getConsoleOutput": {"length": "x"}},
    {"os-getConsoleOutput": {"length": -2}}, {"os-getConsoleOutput": {"length": "-2"}},
    {"os-getConsoleOutput": {"length": 1.5}}, {"os-getConsoleOutput": {"lines": 3}},
])
def test_malformed_bodies_are_400(db, member, compute, body):
    server = add_server(db)
    fault(member.post("/servers/%s/action" % server, body), 400)
    assert task_state(db, server) is None and compute.calls == []


@pytest.mark.parametrize("text", ["{", "null", ""])
def test_not_a_json_object_is_400(db, member, text):
    server = add_server(db)
    fault(member.post("/servers/%s/action" % server, data=text,
                      headers={"Content-Type": "application/json"}), 400)


@pytest.mark.parametrize("length, expected", [
    (3, "line 9\nline 10\n"), ("3", "line 9\nline 10\n"), (1, ""), (0, ""),
    (None, CONSOLE_LOG), (-1, CONSOLE_LOG), ("-1", CONSOLE_LOG), (10 ** 12, CONSOLE_LOG),
])
def test_console_output_is_novas_tail(db, member, length, expected):
    server = add_server(db)
    body = check(schemas.get_console_output, member.post(
        "/servers/%s/action" % server, {"os-getConsoleOutput": {"length": length}}))
    assert body["output"] == expected


def test_console_output_of_three_pieces_as_tempest_asks(db, member):
    """tempest's test_get_console_output: len(output.split('\\n')) == 3."""
    server = add_server(db)
    output = member.post("/servers/%s/action" % server,
                         {"os-getConsoleOutput": {"length": 3}}).get_json()["output"]
    assert len(output.split("\n")) == 3


def test_console_output_without_length_is_all_of_it(db, member):
    server = add_server(db)
    body = check(schemas.get_console_output,
                 member.post("/servers/%s/action" % server, {"os-getConsoleOutput": {}}))
    assert body["output"] == CONSOLE_LOG


def test_console_tail_drops_control_characters():
    assert server_actions.console_tail("a\x1b[0mb\tc\r\n\x00d\n", None) == "a[0mb\tc\nd\n"
    assert server_actions.console_tail("a\nb\nc", 2) == "b\nc"


def test_hard_reboot_is_recorded_as_an_action(db, member):
    server = add_server(db)
    member.post("/servers/%s/action" % server, {"reboot": {"type": "HARD"}})
    assert len(action_names(db, server)) == 1


def test_reader_may_not_act(db, reader):
    server = add_server(db)
    fault(reader.post("/servers/%s/action" % server, {"os-stop": None}), 403)
    assert task_state(db, server) is None


def test_served_under_the_project_id_too(db, member, app):
    server = add_server(db)
    r = member.post("/p1/servers/%s/action" % server, {"pause": None})
    assert r.status_code == 202 and r.get_data() == b""


def test_admin_acts_on_another_projects_server(db, admin):
    server = add_server(db)
    check(schemas.server_actions_common_schema,
          admin.post("/servers/%s/action" % server, {"os-stop": None}))
    assert task_state(db, server) == states.POWERING_OFF
    with db.transaction() as s:
        assert [a.project_id for a in actions.action_list(s, server)] == ["p1"]
