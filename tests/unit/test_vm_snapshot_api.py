"""The snapshot action on the API side (/v1): the queued image created at
once with its source recorded, the guarded move to ``image_snapshot``, the
cast to the VM's host; 409 naming the state, 400 for bad bodies, and nothing
left behind when the cast cannot be sent."""
import pytest

from common import context, exception, states
from common.db import actions
from common.db import api as db_api
from common.db import images as db_images
from nova_api.app import create_app
from tests.unit.conftest import auth_headers, token_for

ADMIN = context.RequestContext(project_id="x", is_admin=True)


@pytest.fixture
def api(conf, db, image, recorder):
    app = create_app(conf, db, recorder(), recorder())
    client = app.test_client()
    client.environ_base["HTTP_X_AUTH_TOKEN"] = token_for(db, "default")
    client.compute = app.extensions["mininova"]["snapshot_service"].compute_rpcapi
    return client


def placed(api, db, name="web1", vm_state=states.ACTIVE, host="h1"):
    r = api.post("/v1/vms", json={"name": name, "image": "blank", "flavor": "m1.tiny"})
    assert r.status_code == 202, r.get_json()
    vm = r.get_json()["vm"]
    with db.transaction() as s:
        db_api.instance_update_if(s, vm["id"], {"host": host, "vm_state": vm_state,
                                                "task_state": None})
    return vm


def snapshot(api, ref, **args):
    return api.post("/v1/vms/%s/action" % ref, json={"snapshot": args})


def image_row(db, image_id):
    with db.transaction() as s:
        image = s.get(db_images.Image, image_id)
        return image, db_images.properties_of(s, [image_id])[image_id]


def test_snapshot_creates_a_queued_image_and_casts_to_the_host(api, db, image):
    vm = placed(api, db)
    r = snapshot(api, "web1", name="snap1", metadata={"purpose": "backup"})
    assert r.status_code == 202, r.get_json()
    body = r.get_json()["image"]
    assert (body["name"], body["status"], body["disk_format"]) == ("snap1", "queued", "qcow2")
    assert r.headers["Location"] == "/v1/images/%s" % body["id"]
    row, properties = image_row(db, body["id"])
    assert (row.visibility, row.owner, row.min_disk) == ("private", vm["project_id"], 1)
    assert properties["instance_uuid"] == vm["id"]
    assert properties["image_type"] == "snapshot"
    assert properties["base_image_ref"] == image
    assert properties["purpose"] == "backup"
    assert api.compute.calls == [("snapshot_instance", ("h1", vm["id"], body["id"]), {})]
    shown = api.get("/v1/vms/web1").get_json()["vm"]
    assert shown["task_state"] == states.IMAGE_SNAPSHOT and shown["status"] == "ACTIVE"
    with db.transaction() as s:
        assert [a.action for a in actions.action_list(s, vm["id"])] == ["createImage",
                                                                         "create"]
    # The image is the owner's to see, not another project's.
    assert api.get("/image/v2/images/%s" % body["id"]).status_code == 200
    assert api.get("/image/v2/images/%s" % body["id"],
                   headers=auth_headers(db, "other")).status_code == 404


@pytest.mark.parametrize("vm_state", [states.STOPPED, states.PAUSED, states.SUSPENDED])
def test_a_vm_at_rest_in_any_power_can_be_snapshotted(api, db, vm_state):
    placed(api, db, vm_state=vm_state)
    assert snapshot(api, "web1", name="s").status_code == 202


def test_a_second_snapshot_meanwhile_is_409_naming_the_task(api, db):
    placed(api, db)
    assert snapshot(api, "web1", name="s1").status_code == 202
    r = snapshot(api, "web1", name="s2")
    assert r.status_code == 409
    assert "image_snapshot" in r.get_json()["error"]["message"]
    assert len(api.compute.calls) == 1
    assert image_names(db) == ["blank", "s1"]  # the refused one left no image


def image_names(db):
    with db.transaction() as s:
        return sorted(i.name for i in db_images.query(s, ADMIN))


@pytest.mark.parametrize("vm_state,host,needle", [
    (states.ERROR, "h1", "ERROR"), (states.BUILDING, "h1", "BUILD"),
    (states.BUILDING, None, "before it is on a host")])
def test_snapshot_not_allowed_now_is_409(api, db, vm_state, host, needle):
    placed(api, db, vm_state=vm_state, host=host)
    r = snapshot(api, "web1", name="s")
    assert r.status_code == 409 and needle in r.get_json()["error"]["message"]
    assert api.compute.calls == []
    assert image_names(db) == ["blank"]


def test_a_locked_vm_refuses_a_members_snapshot(api, db):
    vm = placed(api, db)
    with db.transaction() as s:
        db_api.instance_update_if(s, vm["id"], {"locked": True, "locked_by": "admin"})
    r = snapshot(api, "web1", name="s")
    assert r.status_code == 409 and "locked" in r.get_json()["error"]["message"]
    assert api.compute.calls == []


@pytest.mark.parametrize("args,code,needle", [
    ({}, 400, "name"),
    ({"name": ""}, 400, "name"),
    ({"name": "x" * 256}, 400, "name"),
    ({"name": "s", "extra": 1}, 400, "extra"),
    ({"name": "s", "metadata": {"k": 1}}, 400, "metadata"),
    ({"name": "s", "metadata": {"status": "active"}}, 400, "status"),
    ({"name": "s", "metadata": {"locations": "x"}}, 400, "locations"),
    ({"name": "s", "metadata": {"os_glance_x": "x"}}, 400, "os_glance_x"),
    ({"name": "s", "metadata": {"k%d" % i: "v" for i in range(130)}}, 413, "properties"),
])
def test_bad_snapshot_bodies(api, db, args, code, needle):
    placed(api, db)
    r = snapshot(api, "web1", **args)
    assert r.status_code == code, r.get_json()
    assert needle in r.get_json()["error"]["message"]
    assert api.compute.calls == []
    assert api.get("/v1/vms/web1").get_json()["vm"]["task_state"] is None


def test_unknown_vm_is_404(api):
    assert snapshot(api, "nope", name="s").status_code == 404


@pytest.mark.parametrize("error", [exception.ServiceUnavailable(reason="broker down"),
                                   exception.RPCVersionCapError(version="1.4",
                                                                version_cap="1.3")])
def test_a_cast_that_cannot_be_sent_leaves_nothing(conf, db, image, recorder, error):
    app = create_app(conf, db, recorder(), recorder(fail_with=error))
    client = app.test_client()
    client.environ_base["HTTP_X_AUTH_TOKEN"] = token_for(db, "default")
    placed(client, db)
    r = snapshot(client, "web1", name="s")
    assert r.status_code in (409, 503)
    assert client.get("/v1/vms/web1").get_json()["vm"]["task_state"] is None
    assert image_names(db) == ["blank"]


def test_the_callers_metadata_wins_but_not_over_the_source(api, db):
    vm = placed(api, db)
    r = snapshot(api, "web1", name="s", metadata={"image_type": "test",
                                                  "instance_uuid": "another"})
    _, properties = image_row(db, r.get_json()["image"]["id"])
    assert (properties["image_type"], properties["instance_uuid"]) == ("test", vm["id"])
