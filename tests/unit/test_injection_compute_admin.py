"""Hostile input on the compute resources beside servers (test_injection.py's
hostile strings, aimed at /compute/v2.1): in paths, queries and bodies,
wrong types, deep nesting, surrogates and 10 MB bodies. Every answer is a
4xx in Nova's fault shape naming what was wrong, never a 500."""
import json
import urllib.parse

import pytest

from nova_api.app import create_app
from tests.conftest import Recorder
from tests.unit.conftest import token_for
from tests.unit.test_injection import HOSTILE, TEN_MB

ROOT = "/compute/v2.1"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """One API and database for the module: the cases read, fail, or create
    what no other case looks for."""
    from oslo_config import cfg
    from common import config
    from common.db import migration
    from common.db.session import Database
    tmp = tmp_path_factory.mktemp("injection-compute-admin")
    conf = cfg.ConfigOpts()
    config.register_opts(conf)
    conf([], project="mininova", default_config_files=[])
    conf.set_override("state_path", str(tmp))
    url = config.database_url(conf)
    migration.db_sync(url)
    db = Database(url)
    app = create_app(conf, db, Recorder(), Recorder())
    yield app, token_for(db, "admins", "admin"), token_for(db, "p1", "member")
    db.dispose()


@pytest.fixture
def call(env):
    app, admin_token, member_token = env
    client = app.test_client()

    def request(method, path, as_admin=True, **kwargs):
        headers = {"X-Auth-Token": admin_token if as_admin else member_token}
        return getattr(client, method)(ROOT + path, headers=headers, **kwargs)
    return request


def fault(r, *codes):
    assert r.status_code in codes, (r.status_code, r.get_data(as_text=True)[:500])
    assert r.mimetype == "application/json"
    (_, body), = r.get_json().items()
    assert body["code"] == r.status_code and body["message"]
    return body["message"]


PATHS = ["/flavors/%s", "/flavors/%s/os-extra_specs", "/flavors/1/os-extra_specs/%s",
         "/flavors/%s/os-flavor-access", "/os-keypairs/%s", "/os-server-groups/%s",
         "/os-quota-sets/%s", "/os-quota-sets/%s/detail", "/os-quota-class-sets/%s",
         "/os-hypervisors/%s", "/os-hypervisors/%s/uptime", "/os-hypervisors/%s/search",
         "/os-hypervisors/%s/servers", "/extensions/%s"]
SEGMENTS = [urllib.parse.quote(v.encode("utf-8", "surrogatepass"), safe="") for v in HOSTILE]


@pytest.mark.parametrize("segment", SEGMENTS + ["%FF%FE", "%2e%2e", "9" * 40])
@pytest.mark.parametrize("path", PATHS)
def test_hostile_path_segments(call, path, segment):
    r = call("get", path % segment)
    if r.status_code == 200:   # quotas exist for any project id (Nova's answer too)
        assert path.startswith("/os-quota")
        return
    message = fault(r, 400, 404)
    if "%00" in segment:
        assert r.status_code == 400 and "NUL" in message


@pytest.mark.parametrize("path,body", [
    ("/flavors", {"flavor": {"name": "x", "ram": 1, "vcpus": 1}}),
    ("/flavors/1/os-extra_specs", {"extra_specs": {"k": "v"}}),
    ("/flavors/1/action", {"addTenantAccess": {"tenant": "p1"}}),
    ("/os-keypairs", {"keypair": {"name": "k"}}),
    ("/os-server-groups", {"server_group": {"name": "g", "policies": ["affinity"]}}),
])
@pytest.mark.parametrize("value", HOSTILE + [None, 1, 1.5, True, [], {}, "\ud800"])
def test_hostile_values_in_every_string_field(call, path, body, value):
    """Each string of a valid body replaced by a hostile value: 400 naming
    the field (or, for a value that is valid there, not a 500)."""
    for field_path in _string_paths(body):
        hostile = json.loads(json.dumps(body))
        _set(hostile, field_path, value)
        data = json.dumps(hostile).encode("utf-8", "surrogatepass")
        r = call("post", path, data=data, content_type="application/json")
        assert r.status_code < 500, (field_path, r.get_data(as_text=True)[:300])
        if r.status_code >= 400:
            fault(r, r.status_code)


def _string_paths(body, prefix=()):
    if isinstance(body, dict):
        for key, value in body.items():
            yield from _string_paths(value, prefix + (key,))
    elif isinstance(body, list):
        for i, value in enumerate(body):
            yield from _string_paths(value, prefix + (i,))
    elif isinstance(body, str):
        yield prefix


def _set(body, path, value):
    for step in path[:-1]:
        body = body[step]
    body[path[-1]] = value


@pytest.mark.parametrize("path,method", [
    ("/flavors", "post"), ("/os-keypairs", "post"), ("/os-server-groups", "post"),
    ("/os-quota-sets/p1", "put"), ("/os-quota-class-sets/default", "put"),
    ("/os-services/disable", "put"), ("/flavors/1/os-extra_specs/k", "put"),
    ("/flavors/1/action", "post")])
@pytest.mark.parametrize("data", [b"", b"null", b"[]", b"\"x\"", b"{", b"[" * 100000,
                                  b'{"a": "\\ud800"}', b"\xff\xfe"])
def test_malformed_bodies(call, path, method, data):
    fault(call(method, path, data=data, content_type="application/json"), 400)


@pytest.mark.parametrize("path,method", [("/flavors", "post"), ("/os-keypairs", "post"),
                                         ("/os-quota-sets/p1", "put")])
def test_ten_megabyte_bodies_and_wrong_types(call, path, method):
    assert "too large" in fault(call(method, path, data=TEN_MB,
                                     content_type="application/json"), 413)
    fault(call(method, path, data=b"{}", content_type="text/plain"), 415)


@pytest.mark.parametrize("query", [
    "minRam=%00", "minRam=" + "9" * 50, "minDisk=1%0Ax", "limit=%C2%B2", "limit=1e3",
    "marker=%00", "marker=" + "x" * 300, "sort_key=%3Cx%3E", "sort_dir=%00",
    "is_public=%00"])
def test_hostile_flavor_queries(call, query):
    fault(call("get", "/flavors/detail?" + query, as_admin=False), 400)


@pytest.mark.parametrize("query", ["host=%00", "binary=" + "x" * 5000, "host=%FF"])
def test_hostile_service_filters_find_nothing(call, query):
    r = call("get", "/os-services?" + query)
    assert r.status_code == 200 and r.get_json() == {"services": []}


@pytest.mark.parametrize("value", ["-2", "1.5", "9" * 30, "%00", "x"])
def test_hostile_quota_values(call, value):
    body = {"quota_set": {"cores": urllib.parse.unquote(value)}}
    assert "quota_set.cores" in fault(call("put", "/os-quota-sets/admins", json=body), 400)
