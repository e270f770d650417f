"""/compute/v2.1/servers/{id}/metadata[/{key}] and the lock actions:
Nova's bodies and codes, checked with tempest 47's v2_1 schemas."""
import uuid

import pytest
from tempest.lib.api_schema.response.compute.v2_1 import servers as schemas

from common import states
from common.db import api as db_api
from tests.unit.compute_surface import admin, app, fault, member, other, reader  # noqa: F401
from tests.unit.test_compute_tempest_schemas import check


@pytest.fixture
def server(db):
    with db.transaction() as s:
        return db_api.instance_insert(
            s, name="vm1", project_id="p1", user_id="u", image_id="i", flavor_id="1",
            vcpus=1, memory_mb=128, root_gb=1, vm_state=states.ACTIVE, host="node1")["id"]


def path(server, key=None):
    return "/servers/%s/metadata" % server + ("/%s" % key if key is not None else "")


def test_replace_merge_and_list(member, server):
    body = check(schemas.list_server_metadata, member.get(path(server)))
    assert body == {"metadata": {}}
    body = check(schemas.set_server_metadata,
                 member.put(path(server), {"metadata": {"a": "1", "b": "2"}}))
    assert body == {"metadata": {"a": "1", "b": "2"}}
    body = check(schemas.update_server_metadata,
                 member.post(path(server), {"metadata": {"b": "3", "c": ""}}))
    assert body == {"metadata": {"a": "1", "b": "3", "c": ""}}
    body = check(schemas.set_server_metadata, member.put(path(server), {"metadata": {"z": "9"}}))
    assert body == {"metadata": {"z": "9"}}
    assert check(schemas.list_server_metadata, member.get(path(server))) == body


def test_items(member, server):
    member.put(path(server), {"metadata": {"a": "1"}})
    body = check(schemas.set_show_server_metadata_item, member.get(path(server, "a")))
    assert body == {"meta": {"a": "1"}}
    body = check(schemas.set_show_server_metadata_item,
                 member.put(path(server, "new key"), {"meta": {"new key": "v"}}))
    assert body == {"meta": {"new key": "v"}}
    check(schemas.delete_server_metadata_item, member.delete(path(server, "a")))
    assert member.get(path(server)).get_json() == {"metadata": {"new key": "v"}}
    fault(member.get(path(server, "a")), 404)
    fault(member.delete(path(server, "a")), 404)


@pytest.mark.parametrize("body", [
    {"meta": {"other": "v"}}, {"meta": {"k": "v", "other": "v"}}, {"meta": {}},
    {"metadata": {"k": "v"}}, {"meta": {"k": "v"}, "x": 1}, {"meta": "k"}, {"meta": {"k": 1}},
    {"meta": {"k": "v" * 256}},
])
def test_item_body_must_be_the_urls_key(member, server, body):
    fault(member.put(path(server, "k"), body), 400)
    assert member.get(path(server)).get_json() == {"metadata": {}}


@pytest.mark.parametrize("metadata", [
    {"": "v"}, {"k" * 256: "v"}, {"a/b": "v"}, {"k": "v" * 256}, {"k": 1}, {"k": None},
    ["k"], "k",
])
def test_bad_metadata_is_400(member, server, metadata):
    fault(member.put(path(server), {"metadata": metadata}), 400)
    fault(member.post(path(server), {"metadata": metadata}), 400)


def test_bad_key_in_the_url_is_400(member, server):
    fault(member.put(path(server, "a%3Cb"), {"meta": {"a<b": "v"}}), 400)


def test_over_the_metadata_items_quota_is_403(member, server):
    many = {"k%d" % i: "v" for i in range(129)}
    fault(member.put(path(server), {"metadata": many}), 403)
    member.put(path(server), {"metadata": {"k%d" % i: "v" for i in range(128)}})
    fault(member.post(path(server), {"metadata": {"one more": "v"}}), 403)
    fault(member.put(path(server, "one more"), {"meta": {"one more": "v"}}), 403)
    assert len(member.get(path(server)).get_json()["metadata"]) == 128


def test_unknown_or_foreign_server_is_404(member, other, admin, server):
    for caller, server_id in ((member, str(uuid.uuid4())), (member, "vm1"), (other, server)):
        fault(caller.get(path(server_id)), 404)
        fault(caller.put(path(server_id), {"metadata": {}}), 404)
        fault(caller.post(path(server_id), {"metadata": {}}), 404)
        fault(caller.put(path(server_id, "k"), {"meta": {"k": "v"}}), 404)
        fault(caller.delete(path(server_id, "k")), 404)
    check(schemas.set_server_metadata, admin.put(path(server), {"metadata": {"by": "admin"}}))
    assert member.get(path(server)).get_json() == {"metadata": {"by": "admin"}}


def test_reader_reads_only(member, reader, server):
    member.put(path(server), {"metadata": {"a": "1"}})
    check(schemas.list_server_metadata, reader.get(path(server)))
    fault(reader.put(path(server), {"metadata": {}}), 403)
    fault(reader.delete(path(server, "a")), 403)


def test_locked_server_refuses_a_members_changes_and_actions(member, admin, server):
    member.put(path(server), {"metadata": {"a": "1"}})
    check(schemas.server_actions_common_schema,
          member.post("/servers/%s/action" % server, {"lock": None}))
    fault(member.post("/servers/%s/action" % server, {"os-stop": None}), 409)
    fault(member.put(path(server), {"metadata": {}}), 409)
    fault(member.post(path(server), {"metadata": {"b": "2"}}), 409)
    fault(member.put(path(server, "a"), {"meta": {"a": "2"}}), 409)
    fault(member.delete(path(server, "a")), 409)
    check(schemas.list_server_metadata, member.get(path(server)))
    # Admins may act on a locked server.
    check(schemas.set_server_metadata, admin.post(path(server), {"metadata": {"b": "2"}}))
    check(schemas.server_actions_common_schema,
          member.post("/servers/%s/action" % server, {"unlock": {}}))
    check(schemas.server_actions_common_schema,
          member.post("/servers/%s/action" % server, {"os-stop": None}))


def test_an_admins_lock_only_an_admin_lifts(member, admin, server):
    check(schemas.server_actions_common_schema,
          admin.post("/servers/%s/action" % server, {"lock": None}))
    fault(member.post("/servers/%s/action" % server, {"unlock": None}), 403)
    check(schemas.server_actions_common_schema,
          admin.post("/servers/%s/action" % server, {"unlock": None}))
    check(schemas.server_actions_common_schema,
          member.post("/servers/%s/action" % server, {"pause": None}))


@pytest.mark.parametrize("body", [{"lock": 1}, {"lock": {"locked_reason": "x"}},
                                  {"unlock": "yes"}])
def test_lock_arguments_are_null_or_empty(member, server, body):
    fault(member.post("/servers/%s/action" % server, body), 400)
