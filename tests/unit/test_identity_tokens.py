"""POST /identity/v3/auth/tokens: the password and token methods, Keystone's
token body, and every way to fail (401 in keystonemiddleware's shape, 400
naming the field)."""
import datetime
import re

import pytest
import sqlalchemy as sa

from common.db import identity
from common.db.models import Token
from nova_api.app import create_app
from tests.unit.conftest import TEST_PASSWORD_COST, password_auth, password_user

TOKENS = "/identity/v3/auth/tokens"
KEYSTONE_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000000Z$")
UNAUTHORIZED = {"error": {"code": 401, "title": "Unauthorized",
                          "message": "The request you have made requires authentication."}}


@pytest.fixture
def app(conf, db, recorder):
    conf.set_override("password_hash_cost", TEST_PASSWORD_COST, group="identity")
    conf.set_override("public_endpoint", "http://cloud.example:8774", group="api")
    return create_app(conf, db, recorder(), recorder())


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def users(db):
    """u (member of demo), r (reader of demo), a (admin of admin)."""
    return {"u": password_user(db, "u", "demo"), "r": password_user(db, "r", "demo", "reader"),
            "a": password_user(db, "a", "admin", "admin")}


def issue(client, body, code=201):
    r = client.post(TOKENS, json=body)
    assert r.status_code == code, r.get_data(as_text=True)
    return r


def unauthorized(r):
    assert r.status_code == 401 and r.get_json() == UNAUTHORIZED
    assert r.headers["WWW-Authenticate"] == 'Keystone uri="http://cloud.example:8774/identity"'
    assert r.headers["x-openstack-request-id"].startswith("req-")


def v1_unauthorized(r):
    """/v1 keeps its own error shape, whoever issued the token."""
    assert r.status_code == 401 and r.get_json()["error"]["message"].startswith(
        "Authentication required")


def test_password_token_has_keystones_shape(client, users):
    r = issue(client, password_auth("u", project="demo"))
    secret = r.headers["X-Subject-Token"]
    token = r.get_json()["token"]
    assert list(token) == ["methods", "audit_ids", "expires_at", "issued_at", "user",
                           "project", "roles", "is_domain", "catalog"]
    assert token["methods"] == ["password"] and len(token["audit_ids"]) == 1
    assert re.match(r"^[A-Za-z0-9_-]{22}$", token["audit_ids"][0])
    assert KEYSTONE_TIME.match(token["expires_at"]) and KEYSTONE_TIME.match(token["issued_at"])
    lifetime = (datetime.datetime.fromisoformat(token["expires_at"][:-1])
                - datetime.datetime.fromisoformat(token["issued_at"][:-1]))
    assert lifetime == datetime.timedelta(seconds=3600)
    default = {"id": "default", "name": "Default"}
    assert token["user"] == {"id": users["u"], "name": "u", "domain": default,
                             "password_expires_at": None}
    assert token["project"] == {"id": "demo", "name": "demo", "domain": default}
    assert [role["name"] for role in token["roles"]] == ["member", "reader"]
    assert all(re.match("^[0-9a-f]{32}$", role["id"]) for role in token["roles"])
    assert token["is_domain"] is False
    assert r.headers["Content-Type"] == "application/json"
    # The token works on the native API as well, and is stored only hashed.
    assert client.get("/v1/vms", headers={"X-Auth-Token": secret}).status_code == 200
    assert client.post("/v1/server-groups", headers={"X-Auth-Token": secret},
                       json={"name": "g", "policy": "affinity"}).status_code == 201


def test_the_catalog_lists_identity_compute_and_image_only(client, users):
    catalog = issue(client, password_auth("u", project="demo")).get_json()["token"]["catalog"]
    assert [(s["type"], s["name"]) for s in catalog] == [
        ("identity", "keystone"), ("compute", "nova"), ("image", "glance")]
    urls = {"identity": "http://cloud.example:8774/identity",
            "compute": "http://cloud.example:8774/compute/v2.1",
            "image": "http://cloud.example:8774/image"}
    for service in catalog:
        assert set(service) == {"type", "name", "id", "endpoints"}
        public, = [e for e in service["endpoints"] if e["interface"] == "public"]
        assert set(public) == {"id", "interface", "region", "region_id", "url"}
        assert public["region"] == public["region_id"] == "RegionOne"
        assert {e["url"] for e in service["endpoints"]} == {urls[service["type"]]}
    again = issue(client, password_auth("u", project="demo")).get_json()["token"]["catalog"]
    assert again == catalog  # ids are stable


@pytest.mark.parametrize("user", [
    {"name": "u", "domain": {"name": "Default"}},
    {"name": "u", "domain": {"id": "default"}},
    "by id",
])
@pytest.mark.parametrize("scope", [
    {"project": {"name": "demo", "domain": {"name": "Default"}}},
    {"project": {"id": "demo"}},
    None,          # the user's project
    "unscoped",
])
def test_password_variants(client, users, user, scope):
    body = password_auth("u", user={"id": users["u"]} if user == "by id" else user)
    if scope is not None:
        body["auth"]["scope"] = scope
    token = issue(client, body).get_json()["token"]
    assert token["user"]["id"] == users["u"] and token["project"]["id"] == "demo"


def test_roles_imply_each_other(client, users):
    def roles(name, project):
        token = issue(client, password_auth(name, project=project)).get_json()["token"]
        return [role["name"] for role in token["roles"]]
    assert roles("a", "admin") == ["admin", "manager", "member", "reader"]
    assert roles("r", "demo") == ["reader"]


def test_a_manager_has_a_members_rights_not_an_admins(client, db, users):
    """Keystone's manager role (tempest's project_manager accounts): between
    member and admin."""
    password_user(db, "m", "demo", "manager")
    token = issue(client, password_auth("m", project="demo")).get_json()["token"]
    assert [role["name"] for role in token["roles"]] == ["manager", "member", "reader"]
    headers = {"X-Auth-Token": issue(client, password_auth("m", project="demo"))
               .headers["X-Subject-Token"]}
    assert client.get("/compute/v2.1/os-migrations", headers=headers).status_code == 403
    assert client.get("/compute/v2.1/servers", headers=headers).status_code == 200
    r = client.post("/compute/v2.1/os-keypairs", headers=headers,
                    json={"keypair": {"name": "k1"}})
    assert r.status_code == 200, r.get_data(as_text=True)


def test_rescope_with_the_token_method(client, db, users):
    with db.transaction() as s:
        identity.role_add(s, "u", "admin", "reader")  # u: member of demo, reader of admin
    first = issue(client, password_auth("u", project="demo"))
    body = {"auth": {"identity": {"methods": ["token"],
                                  "token": {"id": first.headers["X-Subject-Token"]}},
                     "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}
    second = issue(client, body)
    old, new = first.get_json()["token"], second.get_json()["token"]
    assert new["project"]["name"] == "admin" and [r["name"] for r in new["roles"]] == ["reader"]
    assert new["methods"] == ["password", "token"]
    assert new["expires_at"] == old["expires_at"]  # no longer than the token it came from
    assert new["audit_ids"][1] == old["audit_ids"][0] != new["audit_ids"][0]
    assert second.headers["X-Subject-Token"] != first.headers["X-Subject-Token"]
    # A third generation still names the first token's audit id.
    body["auth"]["identity"]["token"]["id"] = second.headers["X-Subject-Token"]
    body["auth"]["scope"] = {"project": {"id": "demo"}}
    third = issue(client, body).get_json()["token"]
    assert third["audit_ids"][1] == old["audit_ids"][0]
    assert third["project"]["id"] == "demo"


def test_token_expiration_is_configurable(client, conf, users):
    conf.set_override("token_expiration", 60, group="identity")
    token = issue(client, password_auth("u")).get_json()["token"]
    lifetime = (datetime.datetime.fromisoformat(token["expires_at"][:-1])
                - datetime.datetime.fromisoformat(token["issued_at"][:-1]))
    assert lifetime == datetime.timedelta(seconds=60)


def test_tokens_are_stored_hashed_with_their_expiry(client, db, users):
    r = issue(client, password_auth("u"))
    secret, token = r.headers["X-Subject-Token"], r.get_json()["token"]
    with db.transaction() as s:
        rows = s.execute(sa.select(Token.secret_sha256, Token.expires_at, Token.project_id)
                         .where(Token.user_id == users["u"])).all()
    (stored, expires_at, project_id), = rows
    assert stored != secret and secret not in stored and len(stored) == 64
    assert expires_at.strftime("%Y-%m-%dT%H:%M:%S.000000Z") == token["expires_at"]
    assert project_id == "demo"


@pytest.mark.parametrize("case", [
    "wrong password", "empty password", "unknown user", "unknown user id", "other domain",
    "no password set", "unknown project", "unknown project id", "project without a role",
    "project in another domain", "domain scope", "system scope", "unsupported method",
])
def test_failed_authentication_is_a_plain_401(client, db, users, case):
    body = password_auth("u", project="demo")
    password = body["auth"]["identity"]["password"]
    if case == "wrong password":
        password["user"]["password"] = "P"
    elif case == "empty password":
        password["user"]["password"] = ""
    elif case == "unknown user":
        password["user"]["name"] = "nobody"
    elif case == "unknown user id":
        password["user"] = {"id": "0" * 32, "password": "p"}
    elif case == "other domain":
        password["user"]["domain"] = {"name": "Other"}
    elif case == "no password set":
        from tests.unit.conftest import token_for
        token_for(db, "demo")
        with db.transaction() as s:
            name = [u.name for u, _ in identity.user_list(s) if u.password_hash is None][0]
        password["user"]["name"] = name
    elif case == "unknown project":
        body["auth"]["scope"]["project"]["name"] = "nope"
    elif case == "unknown project id":
        body["auth"]["scope"] = {"project": {"id": "nope"}}
    elif case == "project without a role":
        body["auth"]["scope"]["project"]["name"] = "admin"
    elif case == "project in another domain":
        body["auth"]["scope"]["project"]["domain"] = {"id": "other"}
    elif case == "domain scope":
        body["auth"]["scope"] = {"domain": {"id": "default"}}
    elif case == "system scope":
        body["auth"]["scope"] = {"system": {"all": True}}
    elif case == "unsupported method":
        body["auth"]["identity"]["methods"] = ["totp"]
    unauthorized(client.post(TOKENS, json=body))


def test_expired_revoked_and_disabled(client, db, users):
    def token_body(secret):
        return {"auth": {"identity": {"methods": ["token"], "token": {"id": secret}}}}

    expired = issue(client, password_auth("u")).headers["X-Subject-Token"]
    with db.transaction() as s:
        s.execute(sa.update(Token).where(Token.user_id == users["u"]).values(
            expires_at=datetime.datetime(2000, 1, 1)))
    unauthorized(client.post(TOKENS, json=token_body(expired)))
    v1_unauthorized(client.get("/v1/vms", headers={"X-Auth-Token": expired}))
    unauthorized(client.post(TOKENS, json=token_body("mn-forged")))
    live = issue(client, password_auth("u")).headers["X-Subject-Token"]
    with db.transaction() as s:
        identity.user_set_enabled(s, "u", False)
    unauthorized(client.post(TOKENS, json=password_auth("u")))
    unauthorized(client.post(TOKENS, json=token_body(live)))
    v1_unauthorized(client.get("/v1/vms", headers={"X-Auth-Token": live}))
    with db.transaction() as s:
        identity.user_set_enabled(s, "u", True)
    # Re-enabling brings no token back, but the password works again.
    v1_unauthorized(client.get("/v1/vms", headers={"X-Auth-Token": live}))
    issue(client, password_auth("u"))


def test_a_role_taken_away_is_taken_from_the_tokens(client, db, users):
    with db.transaction() as s:
        identity.role_add(s, "u", "admin", "admin")
    secret = issue(client, password_auth("u", project="admin")).headers["X-Subject-Token"]
    headers = {"X-Auth-Token": secret}
    assert client.get("/v1/services", headers=headers).status_code == 200
    with db.transaction() as s:
        identity.role_add(s, "u", "admin", "reader")
        identity.role_remove(s, "u", "admin", "admin")
    assert client.get("/v1/services", headers=headers).status_code == 403
    assert client.get("/v1/vms", headers=headers).status_code == 200
    with db.transaction() as s:
        identity.role_remove(s, "u", "admin", "reader")
    v1_unauthorized(client.get("/v1/vms", headers=headers))
    unauthorized(client.get("/identity/v3/auth/catalog", headers=headers))


@pytest.mark.parametrize("body,field", [
    ({}, "auth"),
    ({"auth": None}, "auth"),
    ({"auth": {}}, "auth.identity"),
    ({"auth": {"identity": {}}}, "auth.identity.methods"),
    ({"auth": {"identity": {"methods": "password"}}}, "auth.identity.methods"),
    ({"auth": {"identity": {"methods": []}}}, "auth.identity.methods"),
    ({"auth": {"identity": {"methods": ["password", "token"]}}}, "auth.identity.methods"),
    ({"auth": {"identity": {"methods": [1]}}}, "auth.identity.methods.0"),
    ({"auth": {"identity": {"methods": ["password"]}}}, "auth.identity.password"),
    ({"auth": {"identity": {"methods": ["token"]}}}, "auth.identity.token"),
    ({"auth": {"identity": {"methods": ["token"], "token": {}}}}, "auth.identity.token.id"),
    ({"auth": {"identity": {"methods": ["token"], "token": {"id": 5}}}},
     "auth.identity.token.id"),
    ({"auth": {"identity": {"methods": ["password"], "password": {}}}},
     "auth.identity.password.user"),
    ({"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "u"}}}}},
     "auth.identity.password.user.password"),
    ({"auth": {"identity": {"methods": ["password"],
                            "password": {"user": {"password": "p"}}}}},
     "auth.identity.password.user"),
    ({"auth": {"identity": {"methods": ["password"],
                            "password": {"user": {"name": "u", "password": "p"}}}}},
     "auth.identity.password.user.domain"),
    ({"auth": {"identity": {"methods": ["password"],
                            "password": {"user": {"name": ["u"], "password": "p"}}}}},
     "auth.identity.password.user.name"),
    ({"auth": {"identity": {"methods": ["password"],
                            "password": {"user": {"id": "x", "password": 1}}}}},
     "auth.identity.password.user.password"),
    (dict(password_auth("u")["auth"], scope="all"), None),
])
def test_malformed_bodies_are_a_400_naming_the_field(client, users, body, field):
    if field is None:  # scope as a stray string
        body, field = {"auth": body}, "auth.scope"
    r = client.post(TOKENS, json=body)
    assert r.status_code == 400, r.get_data(as_text=True)
    error = r.get_json()["error"]
    assert error["code"] == 400 and error["title"] == "Bad Request"
    assert "'%s'" % field in error["message"], error["message"]


@pytest.mark.parametrize("scope,field", [
    ({"project": {}}, "auth.scope.project"),
    ({"project": {"name": "demo"}}, "auth.scope.project.domain"),
    ({"project": {"id": 7}}, "auth.scope.project.id"),
    ({"project": "demo"}, "auth.scope.project"),
])
def test_malformed_scopes(client, users, scope, field):
    body = password_auth("u")
    body["auth"]["scope"] = scope
    r = client.post(TOKENS, json=body)
    assert r.status_code == 400 and "'%s'" % field in r.get_json()["error"]["message"]


def test_not_json(client, users):
    r = client.post(TOKENS, data="auth=1", content_type="application/x-www-form-urlencoded")
    assert r.status_code == 415 and r.get_json()["error"]["title"] == "Unsupported Media Type"
    r = client.post(TOKENS, data="{", content_type="application/json")
    assert r.status_code == 400 and "malformed JSON" in r.get_json()["error"]["message"]
