"""Resize, cold migration and the migration listings through both API
surfaces (Flask's test client; the conductor's casts recorded): /v1's
actions and GET /v1/migrations, /v1/vms/<ref>/migrations; Nova 2.1's
resize, confirmResize, revertResize, migrate and os-migrations, checked
with tempest's own v2_1 schemas."""
import pytest
from tempest.lib.api_schema.response.compute.v2_1 import migrations as tempest_migrations
from tempest.lib.api_schema.response.compute.v2_1 import servers as tempest_servers

from common import states
from common.db import allocations, vm_migrations
from common.db import api as db_api
from common.db import flavors as db_flavors
from tests.unit.compute_surface import admin, app, fault, member, other  # noqa: F401
from tests.unit.conftest import auth_headers
from tests.unit.test_compute_tempest_schemas import check


@pytest.fixture
def vm(db, app):  # noqa: F811
    """An ACTIVE VM of p1 (flavor "1", m1.tiny) on node1, holding its allocation."""
    with db.transaction() as s:
        for host in ("node1", "node2"):
            db_api.service_heartbeat(s, host, "mininova-compute",
                                     {"vcpus": 8, "memory_mb": 16384, "local_gb": 100})
        for fid, name, vcpus, ram, disk in (("91", "m1.big", 2, 256, 2),
                                            ("92", "m1.nodisk", 1, 128, 0)):
            if not _exists(s, fid):
                db_flavors.create(s, name, vcpus, ram, disk, flavor_id=fid)
        inst = db_api.instance_insert(s, name="vm1", project_id="p1", image_id="i",
                                      flavor_id="1", vcpus=1, memory_mb=128, root_gb=1,
                                      vm_state="active", host="node1")
        allocations.allocate(s, inst["id"], "node1", allocations.Resources(1, 128, 1),
                             (16.0, 1.5, 1.0))
    return inst["id"]


def _exists(s, fid):
    try:
        db_flavors.get(s, fid)
        return True
    except Exception:
        return False


def casts(app):  # noqa: F811
    return [(m, a[1:]) for m, a, _ in app.extensions["mininova"]["move_service"]
            .conductor_rpcapi.calls]


def row(db, vm):
    with db.transaction() as s:
        return db_api.instance_row(s, vm)


def finish_move(db, vm, host="node2"):
    """What the conductor's task does once the move is done."""
    with db.transaction() as s:
        migration = vm_migrations.in_progress_for_instance(s, vm)
        vm_migrations.update_if(s, migration.uuid, {"status": "finished", "dest_host": host})
        db_api.instance_update_if(s, vm, {"vm_state": states.RESIZED, "task_state": None,
                                          "host": host})
    return migration.uuid


def test_v1_resize_then_confirm(app, db, vm):  # noqa: F811
    client, headers = app.test_client(), auth_headers(db, "p1")
    r = client.post("/v1/vms/vm1/action", json={"resize": {"flavor": "m1.big"}},
                    headers=headers)
    assert r.status_code == 202, r.get_data(as_text=True)
    migration_uuid = r.get_json()["migration"]
    inst = row(db, vm)
    assert (inst.task_state, inst.flavor_id, inst.vcpus) == (states.RESIZE_PREP, "91", 2)
    assert casts(app) == [("migrate_server", (migration_uuid,))]
    r = client.get("/v1/vms/vm1", headers=headers)
    assert r.get_json()["vm"]["status"] == "RESIZE"
    r = client.post("/v1/vms/vm1/action", json={"resize": {"flavor": "m1.big"}},
                    headers=headers)
    assert r.status_code == 409 and "resize_prep" in r.get_json()["error"]["message"]

    finish_move(db, vm)
    (listed,) = client.get("/v1/vms/vm1/migrations", headers=headers).get_json()["migrations"]
    assert {k: listed[k] for k in ("id", "vm", "type", "status", "source", "destination",
                                   "old_flavor", "new_flavor")} == {
        "id": migration_uuid, "vm": vm, "type": "resize", "status": "finished",
        "source": "node1", "destination": "node2", "old_flavor": "1", "new_flavor": "91"}
    assert listed["request_id"].startswith("req-") and listed["created_at"].endswith("Z")
    r = client.post("/v1/vms/vm1/action", json={"confirm_resize": {}}, headers=headers)
    assert r.status_code == 202
    assert row(db, vm).task_state == states.RESIZE_CONFIRMING
    assert casts(app)[-1] == ("confirm_resize", (migration_uuid,))
    r = client.get("/v1/vms/vm1/actions", headers=headers).get_json()["actions"]
    assert [a["action"] for a in r] == ["confirm_resize", "resize"]


def test_v1_refusals(app, db, vm):  # noqa: F811
    client, headers = app.test_client(), auth_headers(db, "p1")

    def act(body, code, what):
        r = client.post("/v1/vms/vm1/action", json=body, headers=headers)
        assert r.status_code == code, r.get_data(as_text=True)
        assert what in r.get_json()["error"]["message"]
    act({"resize": {"flavor": "m1.tiny"}}, 400, "already has flavor m1.tiny")
    act({"resize": {"flavor": "m1.nodisk"}}, 400, "a disk never shrinks")
    act({"resize": {"flavor": "nope"}}, 404, "nope")
    act({"resize": {}}, 400, "flavor")
    act({"revert_resize": {}}, 409, "cannot revert resize VM vm1 while it is ACTIVE")
    act({"migrate": {}}, 403, "admin")
    assert casts(app) == []


def test_v1_admin_migrate_and_listing(app, db, vm):  # noqa: F811
    client, headers = app.test_client(), auth_headers(db, "admins", "admin")
    r = client.post("/v1/vms/%s/action" % vm, json={"migrate": {"host": "node1"}},
                    headers=headers)
    assert r.status_code == 400 and "on host node1 already" in r.get_json()["error"]["message"]
    r = client.post("/v1/vms/%s/action" % vm, json={"migrate": {"host": "nohost"}},
                    headers=headers)
    assert r.status_code == 400 and "no compute host" in r.get_json()["error"]["message"]
    r = client.post("/v1/vms/%s/action" % vm, json={"migrate": {"host": "node2"}},
                    headers=headers)
    assert r.status_code == 202
    assert row(db, vm).flavor_id == "1"
    (listed,) = client.get("/v1/migrations?type=migration&host=node1",
                           headers=headers).get_json()["migrations"]
    assert (listed["type"], listed["status"], listed["vm"]) == ("migration", "accepted", vm)
    assert client.get("/v1/migrations?status=error",
                      headers=headers).get_json()["migrations"] == []


def test_nova_resize_confirm_revert_and_os_migrations(app, db, vm, member, admin):  # noqa: F811,E501
    assert fault(member.post("/servers/%s/action" % vm, {"resize": {"flavorRef": "1"}}),
                 400)
    assert "flavor" in fault(member.post("/servers/%s/action" % vm,
                                         {"resize": {"flavorRef": "99"}}), 400)
    assert fault(member.post("/servers/%s/action" % vm, {"confirmResize": None}), 409)
    r = member.post("/servers/%s/action" % vm, {"resize": {"flavorRef": "91"}})
    assert r.status_code == 202, r.get_data(as_text=True)
    body = member.get("/servers/%s" % vm).get_json()["server"]
    assert (body["status"], body["flavor"]["id"]) == ("RESIZE", "91")
    finish_move(db, vm)
    assert member.get("/servers/%s" % vm).get_json()["server"]["status"] == "VERIFY_RESIZE"
    r = member.post("/servers/%s/action" % vm, {"revertResize": None})
    assert r.status_code == 202
    assert row(db, vm).task_state == states.RESIZE_REVERTING
    assert member.get("/servers/%s" % vm).get_json()["server"]["status"] == "REVERT_RESIZE"
    with db.transaction() as s:  # the conductor's revert, done
        migration = vm_migrations.in_progress_for_instance(s, vm)
        vm_migrations.update_if(s, migration.uuid, {"status": "reverted"})
        db_api.instance_update_if(s, vm, {"vm_state": "active", "task_state": None,
                                          "host": "node1", "flavor_id": "1", "vcpus": 1,
                                          "memory_mb": 128, "root_gb": 1})
    assert fault(member.post("/servers/%s/action" % vm, {"migrate": None}), 403)
    assert fault(admin.post("/servers/%s/action" % vm, {"migrate": {"host": "node2"}}), 400)
    r = admin.post("/servers/%s/action" % vm, {"migrate": None})
    assert r.status_code == 202
    finish_move(db, vm)
    r = member.post("/servers/%s/action" % vm, {"confirmResize": None})
    check(tempest_servers.server_actions_confirm_resize, r)
    body = check(tempest_migrations.list_migrations, admin.get("/os-migrations"))
    assert [(m["status"], m["new_instance_type_id"]) for m in body["migrations"]] == [
        ("confirming", 1), ("reverted", 91)]
    assert body["migrations"][1]["source_compute"] == "node1"
    body = check(tempest_migrations.list_migrations,
                 admin.get("/os-migrations?status=reverted&instance_uuid=%s" % vm))
    assert len(body["migrations"]) == 1
    assert fault(member.get("/os-migrations"), 403)
    assert member.get("/servers/%s/migrations" % vm).status_code == 404  # 2.22+ only
    actions = member.get("/servers/%s/os-instance-actions" % vm).get_json()["instanceActions"]
    assert [a["action"] for a in actions] == ["confirmResize", "migrate", "revertResize",
                                             "resize"]
