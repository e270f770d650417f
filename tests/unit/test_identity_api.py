"""The rest of the Keystone v3 subset: version discovery, validating and
revoking tokens, the catalog and projects a token's holder may read."""
import pytest

from common.db import identity
from nova_api.app import create_app
from tests.unit.conftest import TEST_PASSWORD_COST, password_auth, password_user, token_for

TOKENS = "/identity/v3/auth/tokens"
VERSION = {"id": "v3.14", "status": "stable", "updated": "2020-04-07T00:00:00Z",
           "links": [{"rel": "self", "href": "http://localhost/identity/v3/"}],
           "media-types": [{"base": "application/json",
                            "type": "application/vnd.openstack.identity-v3+json"}]}


@pytest.fixture
def client(conf, db, recorder):
    conf.set_override("password_hash_cost", TEST_PASSWORD_COST, group="identity")
    password_user(db, "u", "demo")
    password_user(db, "r", "demo", "reader")
    password_user(db, "u2", "demo2")
    password_user(db, "a", "admin", "admin")
    return create_app(conf, db, recorder(), recorder()).test_client()


def login(client, name, project=None):
    r = client.post(TOKENS, json=password_auth(name, project=project))
    assert r.status_code == 201, r.get_data(as_text=True)
    return r.headers["X-Subject-Token"]


def get(client, path, token, **headers):
    return client.get(path, headers=dict(headers, **{"X-Auth-Token": token}))


def error(r, code, title):
    assert r.status_code == code, r.get_data(as_text=True)
    body = r.get_json()["error"]
    assert body["code"] == code and body["title"] == title and body["message"]
    return body["message"]


@pytest.mark.parametrize("path", ["/identity", "/identity/"])
def test_versions_without_a_token(client, path):
    r = client.get(path)
    assert r.status_code == 300 and r.get_json() == {"versions": {"values": [VERSION]}}
    assert r.headers["x-openstack-request-id"].startswith("req-")


@pytest.mark.parametrize("path", ["/identity/v3", "/identity/v3/"])
def test_v3_without_a_token(client, path):
    r = client.get(path)
    assert r.status_code == 200 and r.get_json() == {"version": VERSION}


def test_links_follow_the_host_or_the_configured_endpoint(client, conf):
    r = client.get("/identity/v3", base_url="https://api.example:8443")
    assert r.get_json()["version"]["links"][0]["href"] == "https://api.example:8443/identity/v3/"
    conf.set_override("public_endpoint", "http://192.168.56.10:8774/", group="api")
    r = client.get("/identity/v3", base_url="http://10.0.0.1:9999")
    assert r.get_json()["version"]["links"][0]["href"] == "http://192.168.56.10:8774/identity/v3/"


def test_validate_own_token(client):
    token = login(client, "u")
    r = get(client, TOKENS, token, **{"X-Subject-Token": token})
    assert r.status_code == 200 and r.headers["X-Subject-Token"] == token
    body = r.get_json()["token"]
    assert body["user"]["name"] == "u" and body["project"]["name"] == "demo"
    assert [s["type"] for s in body["catalog"]] == ["identity", "compute", "image"]
    r = client.get(TOKENS + "?nocatalog", headers={"X-Auth-Token": token,
                                                    "X-Subject-Token": token})
    assert "catalog" not in r.get_json()["token"]
    r = client.head(TOKENS, headers={"X-Auth-Token": token, "X-Subject-Token": token})
    assert r.status_code == 200 and r.get_data() == b""


def test_validate_someone_elses_token(client):
    mine, theirs, admin = login(client, "u"), login(client, "u2"), login(client, "a")
    message = error(get(client, TOKENS, mine, **{"X-Subject-Token": theirs}), 403, "Forbidden")
    assert "admin" in message
    r = get(client, TOKENS, admin, **{"X-Subject-Token": theirs})
    assert r.status_code == 200 and r.get_json()["token"]["user"]["name"] == "u2"


def test_validate_errors(client):
    token = login(client, "u")
    assert "'X-Subject-Token header'" in error(get(client, TOKENS, token), 400, "Bad Request")
    error(get(client, TOKENS, token, **{"X-Subject-Token": "mn-forged"}), 404, "Not Found")
    r = client.get(TOKENS, headers={"X-Subject-Token": token})
    assert r.status_code == 401 and "WWW-Authenticate" in r.headers


def test_revoke(client):
    token, other = login(client, "u"), login(client, "u")
    r = client.delete(TOKENS, headers={"X-Auth-Token": other, "X-Subject-Token": token})
    assert r.status_code == 204 and r.get_data() == b""
    assert get(client, "/v1/vms", token).status_code == 401
    error(get(client, TOKENS, other, **{"X-Subject-Token": token}), 404, "Not Found")
    error(client.delete(TOKENS, headers={"X-Auth-Token": other, "X-Subject-Token": token}),
          404, "Not Found")
    assert get(client, "/v1/vms", other).status_code == 200


def test_a_reader_may_revoke_its_own_token_and_no_one_elses(client):
    reader, member = login(client, "r"), login(client, "u")
    error(client.delete(TOKENS, headers={"X-Auth-Token": reader, "X-Subject-Token": member}),
          403, "Forbidden")
    r = client.delete(TOKENS, headers={"X-Auth-Token": reader, "X-Subject-Token": reader})
    assert r.status_code == 204
    assert get(client, "/v1/vms", member).status_code == 200


def test_auth_catalog_and_projects(client, db):
    with db.transaction() as s:
        identity.role_add(s, "u", "demo2", "reader")
    token = login(client, "u")
    r = get(client, "/identity/v3/auth/catalog", token)
    assert [s["type"] for s in r.get_json()["catalog"]] == ["identity", "compute", "image"]
    assert r.get_json()["links"]["self"] == "http://localhost/identity/v3/auth/catalog"
    projects = get(client, "/identity/v3/auth/projects", token).get_json()["projects"]
    assert [p["name"] for p in projects] == ["demo", "demo2"]


def test_projects(client):
    member, admin = login(client, "u"), login(client, "a")
    r = get(client, "/identity/v3/projects/demo", member)
    assert r.status_code == 200
    assert r.get_json()["project"] == {
        "id": "demo", "name": "demo", "domain_id": "default", "description": "",
        "enabled": True, "is_domain": False, "parent_id": "default", "tags": [], "options": {},
        "links": {"self": "http://localhost/identity/v3/projects/demo"}}
    error(get(client, "/identity/v3/projects/demo2", member), 403, "Forbidden")
    assert "nope" in error(get(client, "/identity/v3/projects/nope", member), 404, "Not Found")
    assert get(client, "/identity/v3/projects/demo2", admin).status_code == 200

    def names(token, query=""):
        r = get(client, "/identity/v3/projects" + query, token)
        assert r.status_code == 200
        return [p["name"] for p in r.get_json()["projects"]]
    assert names(member) == ["demo"]
    assert names(member, "?name=demo2") == []
    assert names(admin) == ["admin", "demo", "demo2"]
    assert names(admin, "?name=demo2") == ["demo2"]
    assert names(admin, "?name=demo2&domain_id=other") == []


def test_users_see_themselves(client, db):
    with db.transaction() as s:
        identity.role_add(s, "u", "demo2", "member")
        ids = {u.name: u.id for u, _ in identity.user_list(s)}
    member, admin = login(client, "u"), login(client, "a")
    r = get(client, "/identity/v3/users/" + ids["u"], member)
    assert r.status_code == 200 and r.get_json()["user"] == {
        "id": ids["u"], "name": "u", "domain_id": "default", "enabled": True,
        "default_project_id": "demo", "password_expires_at": None, "options": {},
        "links": {"self": "http://localhost/identity/v3/users/" + ids["u"]}}
    r = get(client, "/identity/v3/users/%s/projects" % ids["u"], member)
    assert [p["name"] for p in r.get_json()["projects"]] == ["demo", "demo2"]
    error(get(client, "/identity/v3/users/" + ids["u2"], member), 403, "Forbidden")
    error(get(client, "/identity/v3/users/%s/projects" % ids["a"], member), 403, "Forbidden")
    assert get(client, "/identity/v3/users/" + ids["u2"], admin).status_code == 200
    error(get(client, "/identity/v3/users/nobody", admin), 404, "Not Found")


def test_unknown_identity_paths_and_methods(client):
    token = login(client, "u")
    error(get(client, "/identity/v3/domains", token), 404, "Not Found")
    r = client.put(TOKENS, headers={"X-Auth-Token": token})
    error(r, 405, "Method Not Allowed")
    assert "POST" in r.headers["Allow"]


def test_manage_tokens_validate_too(client, db):
    secret = token_for(db, "demo")
    body = get(client, TOKENS, secret, **{"X-Subject-Token": secret}).get_json()["token"]
    assert body["methods"] == ["token"] and body["expires_at"] is None
    assert body["project"]["id"] == "demo"
