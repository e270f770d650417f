"""The Keystone v3 subset on a real stack (the API daemon on waitress,
PostgreSQL with its token cache and revocation listener on), driven by the
real keystoneauth1: password authentication and the catalog, version
discovery, re-scoping with the token method, a token revoked in the middle
of a session, and a user disabled through mininova-manage refused on its
very next request."""
import pytest
from keystoneauth1 import exceptions as ksa_exceptions
from keystoneauth1 import session
from keystoneauth1.identity import v3

from mininova_lab.stack import Stack
from mininova_lab.waiting import wait_for

pytestmark = pytest.mark.real_services("rabbitmq", "postgresql", "http")

IDENTITY_V3 = {"service_type": "identity", "interface": "public", "min_version": "3",
               "max_version": "3.latest"}
UNAUTHORIZED = {"error": {"code": 401, "title": "Unauthorized",
                          "message": "The request you have made requires authentication."}}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("identity"))
    try:
        s.start(schedulers=0, compute=False, conductors=0)
        # The API caches identities: refusing at once must not depend on luck.
        wait_for(lambda: "token cache on: listening for revocations" in s.logs_text(), 30,
                 what="the API's revocation listener")
        for project in ("demo", "ops"):
            s.manage("project", "create", project)
        yield s
    finally:
        s.stop()


def user(stack, name, project="demo", role="member", password="secret pw"):
    stack.manage("user", "create", name, "--project", project, "--role", role,
                 "--password-stdin", stdin=password + "\n")
    return password


def password_plugin(stack, name, password, project="demo"):
    return v3.Password(auth_url=stack.url + "/identity/v3", username=name, password=password,
                       user_domain_name="Default", project_name=project,
                       project_domain_name="Default")


def test_password_authentication_and_the_catalog(stack):
    plugin = password_plugin(stack, "alice", user(stack, "alice"))
    sess = session.Session(auth=plugin)
    access = plugin.get_access(sess)
    assert access.project_name == "demo" and access.username == "alice"
    assert access.user_domain_id == "default" and access.project_domain_name == "Default"
    assert sorted(access.role_names) == ["member", "reader"]
    catalog = access.service_catalog
    assert sorted(s["type"] for s in catalog.catalog) == ["compute", "identity", "image"]
    for service_type, path in (("identity", "/identity"), ("compute", "/compute/v2.1"),
                               ("image", "/image")):
        assert catalog.url_for(service_type=service_type, interface="public",
                               region_name="RegionOne") == stack.url + path
    # Version discovery: GET /identity (300) gives v3's self link as the endpoint.
    assert sess.get_endpoint(**IDENTITY_V3) == stack.url + "/identity/v3/"
    r = sess.get("/auth/projects", endpoint_filter=IDENTITY_V3)
    assert [p["name"] for p in r.json()["projects"]] == ["demo"]
    assert r.headers["x-openstack-request-id"].startswith("req-")
    # The token works on the native API too.
    assert sess.get(stack.url + "/v1/vms").json() == {"vms": []}
    with pytest.raises(ksa_exceptions.Unauthorized):
        password_plugin(stack, "alice", "wrong").get_access(session.Session())


def test_rescope_with_the_token_method(stack):
    password = user(stack, "bob")
    stack.manage("role", "add", "reader", "--user", "bob", "--project", "ops")
    first = password_plugin(stack, "bob", password).get_access(session.Session())
    plugin = v3.Token(auth_url=stack.url + "/identity/v3", token=first.auth_token,
                      project_name="ops", project_domain_name="Default")
    sess = session.Session(auth=plugin)
    second = plugin.get_access(sess)
    assert second.project_name == "ops" and second.role_names == ["reader"]
    assert second.auth_token != first.auth_token
    assert second.expires == first.expires and second.audit_chain_id == first.audit_id
    # A reader reads, and changes nothing.
    assert sess.get(stack.url + "/v1/vms").status_code == 200
    r = sess.post(stack.url + "/v1/server-groups", json={"name": "g", "policy": "affinity"},
                  raise_exc=False)
    assert r.status_code == 403


def test_a_token_revoked_mid_session_is_replaced(stack):
    """keystoneauth answers a 401 by authenticating again, once: `openstack
    token revoke` (DELETE /v3/auth/tokens) in the middle of a session."""
    plugin = password_plugin(stack, "carol", user(stack, "carol"))
    sess = session.Session(auth=plugin)
    old = plugin.get_access(sess).auth_token
    assert sess.get(stack.url + "/v1/vms").status_code == 200
    r = sess.delete("/auth/tokens", endpoint_filter=IDENTITY_V3,
                    headers={"X-Subject-Token": old})
    assert r.status_code == 204
    probe = stack.http.get(stack.url + "/compute/v2.1/servers", timeout=10,
                           headers={"X-Auth-Token": old})
    assert probe.status_code == 401 and probe.json() == UNAUTHORIZED
    assert sess.get(stack.url + "/v1/vms").status_code == 200  # after a new token
    assert plugin.get_access(sess).auth_token != old


def test_a_disabled_user_gets_401_on_its_very_next_request(stack):
    plugin = password_plugin(stack, "dave", user(stack, "dave"))
    sess = session.Session(auth=plugin)
    token = plugin.get_access(sess).auth_token

    def get(path):
        return stack.http.get(stack.url + path, headers={"X-Auth-Token": token}, timeout=10)
    # Served from the API's token cache after the first.
    assert [get("/v1/vms").status_code for _ in range(3)] == [200] * 3
    assert get("/identity/v3/auth/catalog").status_code == 200
    stack.manage("user", "disable", "dave")
    r = get("/identity/v3/auth/catalog")
    assert r.status_code == 401 and r.json() == UNAUTHORIZED
    assert r.headers["WWW-Authenticate"] == 'Keystone uri="%s/identity"' % stack.url
    assert get("/v1/vms").status_code == 401
    # keystoneauth's retry with the password is refused too.
    with pytest.raises(ksa_exceptions.Unauthorized):
        sess.get(stack.url + "/v1/vms")
    stack.manage("user", "enable", "dave")
    assert get("/v1/vms").status_code == 401  # its tokens stay revoked
    assert session.Session(auth=password_plugin(stack, "dave", "secret pw")).get(
        stack.url + "/v1/vms").status_code == 200
