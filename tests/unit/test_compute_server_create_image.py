"""createImage at 2.1 on the API side: 202 with no body and the image's URL
in Location, the queued image of the server's project, the cast to its
host; Nova's 400s for bad bodies and 409s for a state, a task or a lock."""
import uuid

import pytest

from common import states
from common.db import images as db_images
from common.db import api as db_api
from nova_api.app import create_app
from tests.conftest import Recorder
from tests.unit.compute_surface import admin, fault, member  # noqa: F401
from tests.unit.conftest import register_blank_image


@pytest.fixture
def compute():
    return Recorder()


@pytest.fixture
def app(conf, db, compute):
    return create_app(conf, db, Recorder(), compute)


@pytest.fixture
def image(conf, db, tmp_path):
    return register_blank_image(conf, db, tmp_path)


def add_server(db, image, vm_state=states.ACTIVE, host="node1"):
    with db.transaction() as s:
        return db_api.instance_insert(
            s, name="vm1", project_id="p1", user_id="u", image_id=image, flavor_id="1",
            vcpus=1, memory_mb=128, root_gb=1, vm_state=vm_state, host=host)["id"]


def create_image(caller, server, **args):
    return caller.post("/servers/%s/action" % server, {"createImage": args})


def images(db):
    with db.transaction() as s:
        return {i.name: i for i in s.query(db_images.Image).filter_by(deleted_at=None)}


def test_create_image_is_202_with_the_location(db, member, compute, image):
    server = add_server(db, image)
    r = create_image(member, server, name="snap 1", metadata={"kind": "backup"})
    assert r.status_code == 202, r.get_data(as_text=True)
    assert r.get_data() == b""
    image_id = r.headers["Location"].rsplit("/", 1)[1]
    assert r.headers["Location"].endswith("/image/v2/images/%s" % image_id)
    snap = images(db)["snap 1"]
    assert (snap.id, snap.status, snap.owner) == (image_id, "queued", "p1")
    assert compute.calls == [("snapshot_instance", ("node1", server, image_id), {})]
    shown = member.client.get("/image/v2/images/%s" % image_id,
                              headers={"X-Auth-Token": member.token}).get_json()
    assert (shown["instance_uuid"], shown["kind"]) == (server, "backup")
    server_body = member.get("/servers/%s" % server).get_json()["server"]
    assert server_body["OS-EXT-STS:task_state"] == "image_snapshot"


@pytest.mark.parametrize("args", [
    {}, {"name": ""}, {"name": " x"}, {"name": "x" * 256}, {"name": 1},
    {"name": "x", "metadata": []}, {"name": "x", "metadata": {"k": 1}},
    {"name": "x", "metadata": {"k/": "v"}}, {"name": "x", "extra": 1},
])
def test_malformed_create_images_are_400(db, member, compute, image, args):
    server = add_server(db, image)
    fault(create_image(member, server, **args), 400)
    assert compute.calls == [] and set(images(db)) == {"blank"}


@pytest.mark.parametrize("vm_state,host", [(states.BUILDING, None), (states.ERROR, "node1")])
def test_create_image_not_allowed_now_is_409(db, member, compute, image, vm_state, host):
    server = add_server(db, image, vm_state, host)
    assert "cannot snapshot" in fault(create_image(member, server, name="s"), 409)
    assert compute.calls == [] and set(images(db)) == {"blank"}


def test_a_locked_server_is_snapshotted_only_by_an_admin(db, member, admin, image):
    server = add_server(db, image)
    member.post("/servers/%s/action" % server, {"lock": None})
    assert "locked" in fault(create_image(member, server, name="s"), 409)
    assert create_image(admin, server, name="s").status_code == 202


def test_too_many_properties_is_403(db, member, image):
    server = add_server(db, image)
    r = create_image(member, server, name="s", metadata={"k%d" % i: "v" for i in range(130)})
    assert "quota" in fault(r, 403)


def test_unknown_server_is_404(member):
    fault(create_image(member, "00000000-0000-0000-0000-000000000000", name="s"), 404)


def backup(caller, server, **args):
    return caller.post("/servers/%s/action" % server, {"createBackup": args})


def active_backup(db, server, name, backup_type="daily"):
    with db.transaction() as s:
        image = db_images.create(s, {"id": str(uuid.uuid4()), "name": name,
                                     "owner": "p1", "visibility": "private",
                                     "status": "active"},
                                 {"instance_uuid": server, "image_type": "backup",
                                  "backup_type": backup_type}, ())
        return image.id


def test_create_backup_rotates_out_the_oldest_beyond_the_rotation(db, member, compute,
                                                                    image):
    server = add_server(db, image)
    old = [active_backup(db, server, "b%d" % i) for i in range(3)]
    active_backup(db, server, "weekly", backup_type="weekly")  # another type: kept
    r = backup(member, server, name="b3", backup_type="daily", rotation="2")
    assert r.status_code == 202 and r.get_data() == b""
    image_id = r.headers["Location"].rsplit("/", 1)[1]
    (method, args, _), = compute.calls
    assert (method, args) == ("backup_instance", ("node1", server, image_id, old[:2]))
    new = images(db)["b3"]
    shown = member.client.get("/image/v2/images/%s" % new.id,
                              headers={"X-Auth-Token": member.token}).get_json()
    assert (shown["image_type"], shown["backup_type"], shown["status"]) == (
        "backup", "daily", "queued")
    server_body = member.get("/servers/%s" % server).get_json()["server"]
    assert server_body["OS-EXT-STS:task_state"] == "image_backup"


def test_create_backup_with_rotation_0_has_no_location(db, member, compute, image):
    server = add_server(db, image)
    r = backup(member, server, name="b", backup_type="daily", rotation=0)
    assert r.status_code == 202 and "Location" not in r.headers
    (method, args, _), = compute.calls
    assert method == "backup_instance" and args[3] == []


@pytest.mark.parametrize("args", [
    {"name": "b", "backup_type": "daily"}, {"name": "b", "rotation": 1},
    {"backup_type": "daily", "rotation": 1}, {"name": "b", "backup_type": "d", "rotation": -1},
    {"name": "b", "backup_type": "d", "rotation": "x"},
    {"name": "b", "backup_type": 1, "rotation": 1},
])
def test_malformed_create_backups_are_400(db, member, compute, image, args):
    server = add_server(db, image)
    fault(backup(member, server, **args), 400)
    assert compute.calls == []


def test_a_backup_meanwhile_is_409(db, member, compute, image):
    server = add_server(db, image)
    assert backup(member, server, name="b", backup_type="d", rotation=1).status_code == 202
    assert "image_backup" in fault(create_image(member, server, name="s"), 409)


def test_image_tasks_are_none(db, member, image):
    r = member.client.get("/image/v2/images/%s/tasks" % image,
                          headers={"X-Auth-Token": member.token})
    assert r.status_code == 200 and r.get_json() == {"tasks": []}
