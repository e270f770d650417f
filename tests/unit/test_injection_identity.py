"""Hostile input on the identity API (the cases of test_injection.py, and
its list of hostile strings, aimed at /identity): every answer is a 4xx in
Keystone's shape that does not echo the value, never a 500; a hostile name
or password authenticates nobody."""
import io
import json

import pytest

from nova_api.app import create_app
from tests.conftest import Recorder
from tests.unit.conftest import TEST_PASSWORD_COST, password_auth, password_user
from tests.unit.test_injection import HOSTILE, TEN_MB

TOKENS = "/identity/v3/auth/tokens"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """One API and database for the module: the cases only read, or fail."""
    from oslo_config import cfg
    from common import config
    from common.db import migration
    from common.db.session import Database
    tmp = tmp_path_factory.mktemp("injection-identity")
    conf = cfg.ConfigOpts()
    config.register_opts(conf)
    conf([], project="mininova", default_config_files=[])
    conf.set_override("state_path", str(tmp))
    conf.set_override("password_hash_cost", TEST_PASSWORD_COST, group="identity")
    url = config.database_url(conf)
    migration.db_sync(url)
    db = Database(url)
    password_user(db, "u", "demo")
    app = create_app(conf, db, Recorder(), Recorder())
    token = app.test_client().post(TOKENS, json=password_auth("u")).headers["X-Subject-Token"]
    yield app, token
    db.dispose()


@pytest.fixture
def api(env):
    return env[0].test_client()


@pytest.fixture
def token(env):
    return env[1]


def error(r, *codes):
    """The message of ``r``, after checking it is a Keystone error of one of ``codes``."""
    assert r.status_code in codes, (r.status_code, r.get_data(as_text=True)[:500])
    assert r.mimetype == "application/json"
    body = r.get_json()["error"]
    assert body["code"] == r.status_code and body["title"] and body["message"]
    assert len(body["message"]) < 300, "the message must not echo the value"
    return body["message"]


def raw(api, text, url=TOKENS, **headers):
    return api.post(url, data=text.encode("utf-8", "surrogatepass"),
                    content_type="application/json", headers=headers)


def with_user(**user):
    return password_auth("u", user=dict(user))


@pytest.mark.parametrize("value", HOSTILE + ["", " ", "u ", "U", "u\n"])
@pytest.mark.parametrize("field", ["name", "id"])
def test_hostile_users_authenticate_nobody(api, field, value):
    user = {field: value}
    if field == "name":
        user["domain"] = {"name": "Default"}
    message = error(api.post(TOKENS, json=with_user(**user)), 400, 401)
    if "\x00" in value or "\n" in value or "\t" in value or len(value) > 255:
        assert "'auth.identity.password.user.%s'" % field in message


@pytest.mark.parametrize("password", HOSTILE + ["", "P", "p ", " p", "p\n"])
def test_hostile_passwords_authenticate_nobody(api, password):
    body = password_auth("u", password=password)
    message = error(api.post(TOKENS, json=body), 400, 401)
    if "\x00" in password or len(password) > 4096:
        assert "'auth.identity.password.user.password'" in message


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize("where", ["project name", "project id", "project domain",
                                   "user domain id", "user domain name"])
def test_hostile_scopes_and_domains(api, where, value):
    body = password_auth("u", project="demo")
    if where == "project name":
        body["auth"]["scope"]["project"]["name"] = value
    elif where == "project id":
        body["auth"]["scope"] = {"project": {"id": value}}
    elif where == "project domain":
        body["auth"]["scope"]["project"]["domain"] = {"name": value}
    else:
        key = where.rsplit(" ", 1)[1]
        body["auth"]["identity"]["password"]["user"]["domain"] = {key: value}
    error(api.post(TOKENS, json=body), 400, 401)


@pytest.mark.parametrize("value", HOSTILE + ["mn-" + "A" * 43])
def test_hostile_token_ids(api, value):
    body = {"auth": {"identity": {"methods": ["token"], "token": {"id": value}}}}
    error(api.post(TOKENS, json=body), 400, 401)


@pytest.mark.parametrize("subject", ["", "x" * 5000, "名前", "mn-<script>", "a\x00b",
                                     "' OR 1=1 --", "../../etc/passwd"])
def test_hostile_subject_tokens(api, token, subject):
    for method in ("get", "delete"):
        r = getattr(api, method)(TOKENS, headers={"X-Auth-Token": token,
                                                  "X-Subject-Token": subject})
        error(r, 400, 404)
    assert api.get("/identity/v3/auth/catalog", headers={"X-Auth-Token": token}).status_code \
        == 200  # the caller's own token survived all of that


@pytest.mark.parametrize("token_value", ["", "x" * 300, "名前", "mn-<script>", "a\x00b"])
def test_hostile_auth_tokens(api, token_value):
    r = api.get("/identity/v3/auth/catalog", headers={"X-Auth-Token": token_value})
    assert error(r, 401) == "The request you have made requires authentication."


@pytest.mark.parametrize("ref", ["a%00b", "%3Cscript%3E", "..%2F..%2Fetc%2Fpasswd", "%2e%2e",
                                 "a%0Ab", "%E5%90%8D" * 2000, "%FF%FE", "'%22"])
@pytest.mark.parametrize("path", ["/identity/v3/projects/%s", "/identity/v3/users/%s",
                                  "/identity/v3/users/%s/projects"])
def test_hostile_identity_paths(api, token, ref, path):
    r = api.get(path % ref, headers={"X-Auth-Token": token})
    message = error(r, 400, 403, 404)
    if ref == "a%00b":
        assert r.status_code == 400 and ("'project_id'" in message or "'user_id'" in message)


@pytest.mark.parametrize("query,code", [
    ("name=a%00", 400), ("name=a%0A", 400), ("name=" + "x" * 256, 400), ("domain_id=%00", 400),
    ("name=%3Cx%3E", 200), ("name=..%2Fx", 200), ("name=%FF%FE", 200), ("name=%27", 200),
])
def test_hostile_project_queries(api, token, query, code):
    r = api.get("/identity/v3/projects?" + query, headers={"X-Auth-Token": token})
    if code == 200:
        assert r.status_code == 200 and r.get_json()["projects"] == []
    else:
        assert "'%s'" % query.split("=")[0] in error(r, 400)


@pytest.mark.parametrize("body,field", [
    ({"auth": []}, "auth"), ({"auth": {"identity": []}}, "auth.identity"),
    ({"auth": {"identity": {"methods": {"password": 1}}}}, "auth.identity.methods"),
    ({"auth": {"identity": {"methods": ["x" * 65]}}}, "auth.identity.methods.0"),
    ({"auth": {"identity": {"methods": ["password"], "password": "p"}}},
     "auth.identity.password"),
    ({"auth": {"identity": {"methods": ["password"], "password": {"user": 5}}}},
     "auth.identity.password.user"),
    ({"auth": {"identity": {"methods": ["password"], "password": {
        "user": {"name": "u", "domain": "Default", "password": "p"}}}}},
     "auth.identity.password.user.domain"),
    ({"auth": {"identity": {"methods": ["token"], "token": "t"}}}, "auth.identity.token"),
    (dict(password_auth("u"), auth=dict(password_auth("u")["auth"], scope=5)), "auth.scope"),
    (dict(password_auth("u"), auth=dict(password_auth("u")["auth"],
                                        scope={"project": []})), "auth.scope.project"),
    ([], "(body)"), ("auth", "(body)"), (1, "(body)"),
])
def test_wrong_types_everywhere(api, body, field):
    assert "'%s'" % field in error(api.post(TOKENS, json=body), 400)


@pytest.mark.parametrize("text", [
    '{"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "\\ud800", '
    '"domain": {"id": "default"}, "password": "p"}}}}}',
    '{"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "u", '
    '"domain": {"id": "default"}, "password": "\\udfff"}}}}}',
    '{"auth": {"x\\udc00": 1, "identity": {"methods": ["password"]}}}',
])
def test_lone_surrogates(api, text):
    assert "surrogate" in error(raw(api, text), 400)


@pytest.mark.parametrize("data", [b"[" * 200_000, b'{"auth":' * 100_000, b"", b"\xff\xfe{}",
                                  b"{'auth': 1}", b'{"auth": ', b"\x00", b"null", b"1"])
def test_malformed_and_deeply_nested_json(api, data):
    message = error(api.post(TOKENS, data=data, content_type="application/json"), 400)
    assert "malformed JSON" in message or "'(body)'" in message


@pytest.mark.parametrize("text", ['{"auth": {"identity": {"methods": ["password"], '
                                  '"password": {"user": {"name": "u", "domain": {"id": '
                                  '"default"}, "password": %s}}}}}' % v
                                  for v in ("NaN", "1e999", "9" * 5000, "true", "[]")])
def test_non_strings_where_a_password_goes(api, text):
    message = error(raw(api, text), 400)
    assert "auth.identity.password.user.password" in message or "malformed JSON" in message


def test_ten_megabyte_bodies(api):
    assert "too large" in error(api.post(TOKENS, data=TEN_MB, content_type="application/json"),
                                413)
    stream = io.BytesIO(TEN_MB)
    r = api.post(TOKENS, input_stream=stream, content_type="application/json",
                 environ_overrides={"wsgi.input_terminated": True})
    assert "too large" in error(r, 413) and stream.tell() <= 1024 * 1024 + 1


@pytest.mark.parametrize("ctype", [None, "text/plain", "application/x-www-form-urlencoded",
                                   "multipart/form-data; boundary=x", "application/xml",
                                   "application/jsonx", "text/json<script>"])
def test_wrong_content_types(api, ctype):
    kwargs = {"data": json.dumps(password_auth("u")).encode()}
    if ctype is not None:
        kwargs["content_type"] = ctype
    assert "application/json" in error(api.post(TOKENS, **kwargs), 415)


@pytest.mark.parametrize("host", ["bad host", "a<b>", "evil.com/../x", "a\tb", "[::1",
                                  "x" * 5000])
def test_hostile_host_headers_build_no_links(api, host):
    r = api.get("/identity/v3", headers={"Host": host})
    if r.status_code == 200:  # a host werkzeug accepts: its links are built on it, escaped by JSON
        href = r.get_json()["version"]["links"][0]["href"]
        assert href.startswith("http://") and href.endswith("/identity/v3/")
    else:
        # Ours (no link can be built), or werkzeug's: a host name it cannot even
        # route (too long for IDNA) matches no route, which needs a token first.
        message = error(r, 400, 401)
        assert r.status_code == 401 or "'Host header'" in message or len(host) > 253
