"""[api] unique_vm_name_scope: names unique per project (default), across
projects (global) or nowhere (empty); renames obey the VM's scope; a /v1
lookup by a name several of the caller's VMs carry is a 409 listing their
ids; deleting a VM frees its name. Concurrency on PostgreSQL:
tests/functional/test_vm_names_pg.py."""
import pytest

from common import context, exception
from common.db import auth
from nova_api import vm_service
from nova_api.app import create_app
from tests.unit.conftest import token_for

P1 = context.RequestContext(project_id="p1", user_id="u1")
P2 = context.RequestContext(project_id="p2", user_id="u2")


@pytest.fixture
def service(db, image, recorder):
    with db.transaction() as s:
        for project in ("p1", "p2"):
            auth.project_create(s, project, project_id=project)
    return lambda scope: vm_service.VMService(db, recorder(), recorder(), name_scope=scope)


def create(svc, ctxt, name="web"):
    return svc.create(ctxt, name, "blank", "m1.tiny")["id"]


def test_project_scope_repeats_names_across_projects_only(service):
    svc = service("project")
    create(svc, P1)
    create(svc, P2)
    with pytest.raises(exception.DuplicateName):
        create(svc, P1)


def test_global_scope_repeats_no_name(service):
    svc = service("global")
    first = create(svc, P1)
    with pytest.raises(exception.DuplicateName):
        create(svc, P2)
    other = create(svc, P2, "db")
    with pytest.raises(exception.DuplicateName):
        svc.update(P2, other, name="web")
    svc.delete(P1, first)  # its name is free again
    create(svc, P2)


def test_empty_scope_repeats_names_and_lookups_by_name_are_409(service):
    svc = service("")
    ids = [create(svc, P1), create(svc, P1), create(svc, P2)]
    with pytest.raises(exception.Conflict) as e:
        svc.get(P1, "web")
    assert ids[0] in e.value.message and ids[1] in e.value.message
    assert ids[2] not in e.value.message
    assert svc.get(P2, "web").id == ids[2]
    assert svc.get(P1, ids[1]).id == ids[1]
    svc.update(P1, ids[1], name="web-2")
    assert svc.get(P1, "web").id == ids[0]


def test_a_vm_keeps_the_scope_it_was_created_with(service):
    create(service("global"), P1)
    svc = service("")
    create(svc, P2)  # no scope: does not collide
    with pytest.raises(exception.DuplicateName):
        create(service("global"), P2)


def test_v1_answers_409_with_the_ids(conf, db, image, recorder):
    conf.set_override("unique_vm_name_scope", "", group="api")
    client = create_app(conf, db, recorder(), recorder()).test_client()
    client.environ_base["HTTP_X_AUTH_TOKEN"] = token_for(db, "p1")
    body = {"name": "web", "image": "blank", "flavor": "m1.tiny"}
    ids = [client.post("/v1/vms", json=body).get_json()["vm"]["id"] for _ in range(2)]
    r = client.get("/v1/vms/web")
    assert r.status_code == 409
    assert all(i in r.get_json()["error"]["message"] for i in ids)
    assert client.delete("/v1/vms/web").status_code == 409
    assert client.get("/v1/vms/" + ids[0]).status_code == 200


def test_names_up_to_255_characters_on_update(service):
    svc = service("project")
    vm = create(svc, P1)
    assert svc.update(P1, vm, name="n" * 255).name == "n" * 255


def test_v1_rename(conf, db, image, recorder):
    client = create_app(conf, db, recorder(), recorder()).test_client()
    client.environ_base["HTTP_X_AUTH_TOKEN"] = token_for(db, "p1")
    for name in ("web", "db"):
        client.post("/v1/vms", json={"name": name, "image": "blank", "flavor": "m1.tiny"})
    r = client.put("/v1/vms/web", json={"name": "web2"})
    assert r.status_code == 200 and r.get_json()["vm"]["name"] == "web2"
    assert client.put("/v1/vms/web2", json={"name": "db"}).status_code == 409
    assert client.put("/v1/vms/web2", json={"name": "a b"}).status_code == 400
    assert client.put("/v1/vms/web2", json={}).status_code == 400
    assert client.put("/v1/vms/nope", json={"name": "x"}).status_code == 404
    assert client.get("/v1/vms/web2").get_json()["vm"]["name"] == "web2"
