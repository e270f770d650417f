"""What the three OpenStack surfaces share: keystonemiddleware's 401, the
request-id headers, one error shape per surface, absolute links from the
public base URL, and the reader's read-only rule (on /v1 as well)."""
import pytest
from flask import Blueprint

from common import exception
from nova_api import errors
from nova_api.app import create_app
from nova_api.openstack import catalog, surfaces, urls
from tests.unit.conftest import TEST_PASSWORD_COST, auth_headers, password_auth, password_user

UNAUTHORIZED = {"error": {"code": 401, "title": "Unauthorized",
                          "message": "The request you have made requires authentication."}}

# A stand-in for the compute and image surfaces' views, to see their errors.
fake = Blueprint("fake_surfaces", __name__)
RAISES = {"bad": exception.ValidationError(field="x", reason="is wrong"),
          "forbidden": exception.Forbidden("no"), "missing": exception.NotFound("gone"),
          "conflict": exception.Conflict(reason="busy"),
          "unavailable": exception.ServiceUnavailable(reason="broker down"),
          "bug": ZeroDivisionError("oops")}


@fake.route("/compute/v2.1/fail/<what>", methods=["GET", "POST"])
@fake.route("/image/v2/fail/<what>", methods=["GET", "POST"])
def fail(what):
    raise RAISES[what]


@pytest.fixture
def app(conf, db, image, recorder):
    conf.set_override("password_hash_cost", TEST_PASSWORD_COST, group="identity")
    app = create_app(conf, db, recorder(), recorder())
    app.register_blueprint(fake)
    return app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.mark.parametrize("path", ["/compute/v2.1/servers", "/compute/v2.1/fail/bad",
                                  "/image/v2/images", "/identity/v3/auth/catalog",
                                  "/identity/v3/projects", "/compute/v2.1/flavors", "/image/v2/fail/x"])
@pytest.mark.parametrize("token", [None, "mn-forged", "x" * 300])
def test_keystonemiddlewares_401_on_every_surface(client, path, token):
    headers = {"X-Auth-Token": token} if token else {}
    r = client.get(path, headers=headers, base_url="http://203.0.113.5:8774")
    assert r.status_code == 401 and r.get_json() == UNAUTHORIZED
    assert r.mimetype == "application/json"
    assert r.headers["WWW-Authenticate"] == 'Keystone uri="http://203.0.113.5:8774/identity"'


def test_the_401_names_the_configured_endpoint(client, conf):
    conf.set_override("public_endpoint", "https://cloud.example/os", group="api")
    r = client.get("/compute/v2.1/servers")
    assert r.headers["WWW-Authenticate"] == 'Keystone uri="https://cloud.example/os/identity"'


def test_v1_keeps_its_own_401(client):
    r = client.get("/v1/vms")
    assert r.status_code == 401 and "WWW-Authenticate" not in r.headers
    assert set(r.get_json()["error"]) == {"code", "message"}


@pytest.mark.parametrize("path,headers", [
    ("/identity/v3", ("x-openstack-request-id",)),
    ("/identity/v3/auth/catalog", ("x-openstack-request-id",)),   # a 401
    ("/compute/v2.1/servers", ("x-openstack-request-id", "x-compute-request-id")),
    ("/image/v2/images", ("x-openstack-request-id",)),
    ("/v1", ()),
])
def test_request_id_headers(client, path, headers):
    r = client.get(path)
    request_id = r.headers["X-Request-Id"]
    assert request_id.startswith("req-")
    for name in ("x-openstack-request-id", "x-compute-request-id"):
        assert r.headers.get(name) == (request_id if name in headers else None), name


@pytest.mark.parametrize("what,code,fault", [
    ("bad", 400, "badRequest"), ("forbidden", 403, "forbidden"), ("missing", 404, "itemNotFound"),
    ("conflict", 409, "conflictingRequest"), ("unavailable", 503, "serviceUnavailable"),
    ("bug", 500, "computeFault"),
])
def test_each_surface_has_its_error_shape(client, db, what, code, fault):
    headers = auth_headers(db, "p1")
    r = client.get("/compute/v2.1/fail/" + what, headers=headers)
    assert r.status_code == code and list(r.get_json()) == [fault]
    assert r.get_json()[fault]["code"] == code and r.get_json()[fault]["message"]
    assert r.headers["x-compute-request-id"] == r.headers["x-openstack-request-id"]
    r = client.get("/image/v2/fail/" + what, headers=headers)
    assert r.status_code == code and r.get_json()["error"]["code"] == code
    assert r.get_json()["error"]["title"]
    # Routing errors too: 404 and 405 in the surface's shape.
    assert list(client.get("/compute/v2.1/nothing", headers=headers).get_json()) == [
        "itemNotFound"]
    r = client.put("/compute/v2.1/fail/bad", headers=headers)
    assert r.status_code == 405 and list(r.get_json()) == ["badMethod"]
    assert "GET" in r.headers["Allow"]


def test_a_surface_of_ones_own(app, db):
    """The hook others build on: a renderer for a prefix of their own."""
    errors.add_renderer(app, "/image/v2/fail", lambda code, message: ("nope %d" % code, code))
    r = app.test_client().get("/image/v2/fail/missing", headers=auth_headers(db, "p1"))
    assert r.status_code == 404 and r.get_data(as_text=True) == "nope 404"


def test_a_host_that_is_no_host_name(client):
    r = client.get("/identity/v3", headers={"Host": "bad host<>"})
    assert r.status_code == 400
    assert "'Host header'" in r.get_json()["error"]["message"]


def test_link_builders(app):
    with app.test_request_context("/compute/v2.1/p1/servers", base_url="http://h:8774"):
        assert urls.base() == "http://h:8774"
        assert urls.url("compute/v2.1/", "/servers", "abc") == (
            "http://h:8774/compute/v2.1/servers/abc")
        assert urls.resource_links("compute/v2.1", "compute", "servers", "abc",
                                   project_id="p1") == [
            {"rel": "self", "href": "http://h:8774/compute/v2.1/p1/servers/abc"},
            {"rel": "bookmark", "href": "http://h:8774/compute/p1/servers/abc"}]
        assert catalog.endpoint("compute") == "http://h:8774/compute/v2.1"
    assert surfaces.of("/compute") is surfaces.COMPUTE
    assert surfaces.of("/computer") is None and surfaces.of("/v1/vms") is None


# -- the reader role ------------------------------------------------------------------

@pytest.fixture
def reader(client, db):
    password_user(db, "r", "p1", "reader")
    r = client.post("/identity/v3/auth/tokens", json=password_auth("r"))
    return {"X-Auth-Token": r.headers["X-Subject-Token"]}


def test_a_reader_reads(client, db, reader):
    member = auth_headers(db, "p1")
    assert client.post("/v1/vms", json={"name": "web1", "image": "blank", "flavor": "m1.tiny"},
                       headers=member).status_code == 202
    for path in ("/v1/vms", "/v1/vms/web1", "/v1/vms/web1/actions", "/v1/flavors",
                 "/v1/images", "/v1/quotas/p1", "/identity/v3/auth/catalog"):
        assert client.get(path, headers=reader).status_code == 200, path
    assert client.head("/v1/vms", headers=reader).status_code == 200


@pytest.mark.parametrize("method,path", [
    ("POST", "/v1/vms"), ("DELETE", "/v1/vms/web1"), ("POST", "/v1/vms/web1/action"),
    ("POST", "/v1/server-groups"), ("DELETE", "/v1/server-groups/g"), ("PUT", "/v1/quotas/p1"),
    ("PUT", "/v1/services/1"), ("POST", "/v1/images?name=x"),
])
def test_a_reader_changes_nothing_on_v1(client, reader, method, path):
    r = client.open(path, method=method, headers=reader, json={})
    assert r.status_code == 403
    assert r.get_json()["error"]["message"] == (
        "The reader role may only read (GET); %s needs member or admin." % method)


@pytest.mark.parametrize("method,path", [("POST", "/compute/v2.1/fail/bad"),
                                         ("DELETE", "/compute/v2.1/servers/x"),
                                         ("PUT", "/identity/v3/projects/p1")])
def test_a_reader_changes_nothing_on_the_openstack_surfaces(client, reader, method, path):
    r = client.open(path, method=method, headers=reader, json={})
    assert r.status_code == 403
    body = r.get_json()
    assert (body.get("forbidden") or body["error"])["code"] == 403


def test_admin_only_stays_admin_only(client, db, reader):
    for headers in (reader, auth_headers(db, "p1")):
        assert client.get("/v1/services", headers=headers).status_code == 403
    assert client.get("/v1/services", headers=auth_headers(db, "ops", "admin")).status_code == 200
