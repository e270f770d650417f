"""The rebuild action at 2.1 on the API side: the guarded move to
``rebuilding`` with the new image (and name, metadata), the cast to the
host, the 202 answer in tempest 47's v2_1 rebuild schema."""
import uuid

import pytest
from tempest.lib.api_schema.response.compute.v2_1 import servers as schemas

from common import exception, states
from common.db import actions
from common.db import api as db_api
from nova_api.app import create_app
from tests.conftest import Recorder
from tests.unit.compute_surface import admin, fault, member  # noqa: F401
from tests.unit.conftest import register_blank_image
from tests.unit.test_compute_tempest_schemas import check


@pytest.fixture
def compute():
    return Recorder()


@pytest.fixture
def app(conf, db, compute):
    return create_app(conf, db, Recorder(), compute)


@pytest.fixture
def image(conf, db, tmp_path):
    return register_blank_image(conf, db, tmp_path)


def add_server(db, vm_state=states.ACTIVE, host="node1"):
    with db.transaction() as s:
        return db_api.instance_insert(
            s, name="vm1", project_id="p1", user_id="u", image_id="old", flavor_id="1",
            vcpus=1, memory_mb=128, root_gb=1, vm_state=vm_state, host=host)["id"]


def rebuild(caller, server, **args):
    return caller.post("/servers/%s/action" % server, {"rebuild": args})


def row(db, server):
    with db.transaction() as s:
        return db_api.instance_get(s, server)


@pytest.mark.parametrize("vm_state", [states.ACTIVE, states.STOPPED, states.ERROR])
def test_rebuild_is_accepted_and_cast(db, member, compute, image, vm_state):
    server = add_server(db, vm_state)
    body = check(schemas.rebuild_server_with_admin_pass,
                 rebuild(member, server, imageRef=image, name="vm2", adminPass="secret",
                         metadata={"k": "v"}))["server"]
    assert (body["id"], body["name"], body["status"]) == (server, "vm2", "REBUILD")
    assert body["image"]["id"] == image and body["metadata"] == {"k": "v"}
    assert body["adminPass"] == "secret"
    inst = row(db, server)
    assert (inst.task_state, inst.image_id) == (states.REBUILDING, image)
    (method, args, _), = compute.calls
    assert (method, args[0], args[1], args[2]["id"]) == ("rebuild_instance", "node1", server,
                                                         image)
    with db.transaction() as s:
        assert [a.action for a in actions.action_list(s, server)] == ["rebuild"]


def test_a_random_admin_pass_and_an_image_href(db, member, image):
    server = add_server(db)
    href = "http://localhost/compute/v2.1/images/%s" % image
    body = check(schemas.rebuild_server_with_admin_pass,
                 rebuild(member, server, imageRef=href))["server"]
    assert body["adminPass"] and body["name"] == "vm1"


@pytest.mark.parametrize("vm_state, host", [(states.BUILDING, None), (states.PAUSED, "node1"),
                                            (states.SUSPENDED, "node1")])
def test_rebuild_not_allowed_now_is_409(db, member, compute, image, vm_state, host):
    server = add_server(db, vm_state, host)
    fault(rebuild(member, server, imageRef=image, name="vm2"), 409)
    inst = row(db, server)
    assert (inst.task_state, inst.image_id, inst.name) == (None, "old", "vm1")
    assert compute.calls == []


def test_a_locked_server_is_rebuilt_only_by_an_admin(db, member, admin, image):
    server = add_server(db)
    member.post("/servers/%s/action" % server, {"lock": None})
    assert "locked" in fault(rebuild(member, server, imageRef=image), 409)
    check(schemas.rebuild_server_with_admin_pass, rebuild(admin, server, imageRef=image))


@pytest.mark.parametrize("args", [
    {}, {"imageRef": ""}, {"imageRef": "/"}, {"imageRef": 1}, {"imageRef": "x", "name": ""},
    {"imageRef": "x", "flavorRef": "1"}, {"imageRef": "x", "metadata": []},
])
def test_malformed_rebuilds_are_400(db, member, compute, args):
    server = add_server(db)
    fault(rebuild(member, server, **args), 400)
    assert compute.calls == []


def test_unknown_image_or_bad_metadata_is_400(db, member, compute, image):
    server = add_server(db)
    fault(rebuild(member, server, imageRef=str(uuid.uuid4())), 400)
    fault(rebuild(member, server, imageRef=image, metadata={"k": "v" * 256}), 400)
    fault(rebuild(member, server, imageRef=image, metadata={"a/b": "v"}), 400)
    assert row(db, server).task_state is None and compute.calls == []


def test_compute_unreachable_undoes_the_rebuild(conf, db, member, image):
    from tests.unit.compute_surface import Caller
    from tests.unit.conftest import token_for
    down = create_app(conf, db, Recorder(),
                      Recorder(fail_with=exception.ServiceUnavailable("broker down")))
    caller = Caller(down.test_client(), token_for(db, "p1", "member"))
    server = add_server(db)
    fault(rebuild(caller, server, imageRef=image), 503)
    inst = row(db, server)
    assert (inst.task_state, inst.image_id) == (None, "old")
