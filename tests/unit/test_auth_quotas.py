"""Tokens, roles, project isolation and race-free quotas through the API."""
import concurrent.futures

import pytest
import sqlalchemy as sa

from common.db import auth as db_auth
from common.db.models import Token
from nova_api.app import create_app
from tests.unit.conftest import auth_headers, token_for


@pytest.fixture
def app(conf, db, image, recorder):
    return create_app(conf, db, recorder(), recorder())


def vm_body(name):
    return {"name": name, "image": "blank", "flavor": "m1.tiny"}


def test_tokens_are_required_and_checked(app, db):
    client = app.test_client()
    assert client.get("/").status_code == 200 and client.get("/v1").status_code == 200
    r = client.get("/v1/vms")
    assert r.status_code == 401 and "X-Auth-Token" in r.get_json()["error"]["message"]
    assert client.get("/v1/vms", headers={"X-Auth-Token": "mn-forged"}).status_code == 401
    assert client.get("/v1/vms", headers={"X-Auth-Token": "x" * 5000}).status_code == 401
    secret = token_for(db, "p1")
    assert client.get("/v1/vms", headers={"X-Auth-Token": secret}).status_code == 200
    with db.transaction() as s:  # only the hash is stored
        hashes = s.scalars(sa.select(Token.secret_sha256)).all()
    assert secret not in hashes and all(len(h) == 64 for h in hashes)


def test_admin_only_endpoints(app, db):
    client = app.test_client()
    member, admin = auth_headers(db, "p1"), auth_headers(db, "ops", "admin")
    for method, path in (("GET", "/v1/services"), ("GET", "/v1/hosts"),
                         ("GET", "/v1/hosts/h1"), ("PUT", "/v1/services/1"),
                         ("POST", "/v1/images?name=x"), ("PUT", "/v1/quotas/p1")):
        r = client.open(path, method=method, headers=member, json={})
        assert r.status_code == 403, (method, path, r.status_code)
        assert "admin" in r.get_json()["error"]["message"]
    assert client.get("/v1/services", headers=admin).status_code == 200


def test_other_projects_vm_is_a_404_not_a_403(app, db):
    client = app.test_client()
    mine, theirs = auth_headers(db, "p1"), auth_headers(db, "p2")
    vm = client.post("/v1/vms", json=vm_body("secret"), headers=mine).get_json()["vm"]
    for method in ("GET", "DELETE"):
        assert client.open("/v1/vms/" + vm["id"], method=method, headers=theirs).status_code == 404
    r = client.post("/v1/vms/%s/action" % vm["id"], json={"stop": {}}, headers=theirs)
    assert r.status_code == 404
    assert client.get("/v1/vms/%s/actions" % vm["id"], headers=theirs).status_code == 404


def test_quota_exceeded_names_the_resource(app, db):
    client = app.test_client()
    admin, member = auth_headers(db, "ops", "admin"), auth_headers(db, "small")
    r = client.put("/v1/quotas/small", json={"quota": {"instances": 2, "ram": 200}},
                   headers=admin)
    assert r.status_code == 200 and r.get_json()["quota"]["limits"]["instances"] == 2
    assert client.post("/v1/vms", json=vm_body("a"), headers=member).status_code == 202
    r = client.post("/v1/vms", json=vm_body("b"), headers=member)
    assert r.status_code == 403
    assert r.get_json()["error"]["message"] == (
        "Quota exceeded for ram: requested 128, 128 of 200 used.")
    quota = client.get("/v1/quotas/small", headers=member).get_json()["quota"]
    assert quota["usage"] == {"instances": 1, "cores": 1, "ram": 128}
    assert client.get("/v1/quotas/ops", headers=member).status_code == 403
    # A delete gives the quota back.
    assert client.delete("/v1/vms/a", headers=member).status_code == 202
    assert client.post("/v1/vms", json=vm_body("b"), headers=member).status_code == 202
    assert client.put("/v1/quotas/small", json={"quota": {"bogus": 1}},
                      headers=admin).status_code == 400
    assert client.put("/v1/quotas/nope", json={"quota": {"ram": 1}},
                      headers=admin).status_code == 404


def test_concurrent_burst_cannot_overshoot_quota(app, db):
    client = app.test_client()
    admin, member = auth_headers(db, "ops", "admin"), auth_headers(db, "burst")
    client.put("/v1/quotas/burst", json={"quota": {"instances": 5}}, headers=admin)
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        codes = list(pool.map(lambda i: client.post(
            "/v1/vms", json=vm_body("b%d" % i), headers=member).status_code, range(20)))
    assert sorted(codes) == [202] * 5 + [403] * 15
    assert client.get("/v1/quotas/burst", headers=member).get_json()["quota"]["usage"][
        "instances"] == 5


def named_project(db, name, role="member"):
    """A project made as mininova-manage makes it (a generated id, not its
    name) and a token of a new user in it; (project id, headers)."""
    with db.transaction() as s:
        project = db_auth.project_create(s, name)
        user = db_auth.user_create(s, name + "-" + role, project.id, role)
        secret = db_auth.token_create(s, user.name)
    assert project.id != name
    return project.id, {"X-Auth-Token": secret}


def test_quotas_by_project_name_are_the_projects_own(app, db):
    client = app.test_client()
    admin = auth_headers(db, "ops", "admin")
    pid, member = named_project(db, "acme")
    assert client.post("/v1/vms", json=vm_body("a1"), headers=member).status_code == 202
    r = client.put("/v1/quotas/acme", json={"quota": {"instances": 50}}, headers=admin)
    assert r.status_code == 200
    quota = r.get_json()["quota"]
    assert quota["project_id"] == pid and quota["limits"]["instances"] == 50
    by_id = client.get("/v1/quotas/" + pid, headers=admin).get_json()
    assert by_id["quota"]["limits"]["instances"] == 50  # set on the project, not on "acme"
    assert by_id["quota"]["usage"] == {"instances": 1, "cores": 1, "ram": 128}
    for headers in (admin, member):  # by name: the same answer as by id
        r = client.get("/v1/quotas/acme", headers=headers)
        assert (r.status_code, r.get_json()) == (200, by_id)
    assert client.get("/v1/quotas/" + pid, headers=member).get_json() == by_id
    # The limit set by name holds for the project's VMs.
    r = client.put("/v1/quotas/acme", json={"quota": {"instances": 1}}, headers=admin)
    assert r.get_json()["quota"]["limits"]["instances"] == 1
    assert client.post("/v1/vms", json=vm_body("a2"), headers=member).status_code == 403


def test_quota_refs_that_name_no_project_or_another_project(app, db):
    client = app.test_client()
    admin = auth_headers(db, "ops", "admin")
    _, member = named_project(db, "acme")
    other, _ = named_project(db, "rival")
    assert client.get("/v1/quotas/nope", headers=admin).status_code == 404
    assert client.put("/v1/quotas/nope", json={"quota": {"ram": 1}},
                      headers=admin).status_code == 404
    for ref in ("rival", other, "nope"):  # another's or none: 403 alike, nothing leaks
        assert client.get("/v1/quotas/" + ref, headers=member).status_code == 403, ref


def test_a_project_named_like_another_projects_id_is_ambiguous(app, db):
    client = app.test_client()
    admin = auth_headers(db, "ops", "admin")
    first, _ = named_project(db, "first")
    with db.transaction() as s:
        second = db_auth.project_create(s, first).id  # named as the first project's id
    for method in ("GET", "PUT"):
        r = client.open("/v1/quotas/" + first, method=method, headers=admin,
                        json={"quota": {"ram": 1}})
        assert r.status_code == 409, (method, r.get_json())
        assert r.get_json()["error"]["message"].endswith(
            "name them 'first' and %s" % second)
    for ref, pid in (("first", first), (second, second)):  # and so they are found
        r = client.get("/v1/quotas/" + ref, headers=admin)
        assert (r.status_code, r.get_json()["quota"]["project_id"]) == (200, pid)
