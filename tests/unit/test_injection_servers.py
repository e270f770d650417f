"""Hostile input on /compute/v2.1/servers (test_injection.py's hostile
strings): in the server id of every route, in every list filter, in every
string of a create and an update body; wrong types, malformed and 10 MB
bodies, wrong content types. Every answer is a 2xx (a filter that matches
nothing, a value valid there) or a 4xx in Nova's fault shape, never a 500."""
import json
import urllib.parse

import pytest

from nova_api.app import create_app
from tests.conftest import Recorder
from tests.unit.conftest import register_blank_image, token_for
from tests.unit.test_injection import HOSTILE, TEN_MB
from tests.unit.test_injection_compute_admin import _set, _string_paths, fault

ROOT = "/compute/v2.1"
SEGMENTS = [urllib.parse.quote(v.encode("utf-8", "surrogatepass"), safe="") for v in HOSTILE]
VALUES = HOSTILE + [None, 1, -1, 1.5, True, [], {}, "\ud800", "x" * 5000]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """One API, database and image for the module; one VM that every case
    may read and none changes for good."""
    from oslo_config import cfg
    from common import config
    from common.db import migration
    from common.db.session import Database
    tmp = tmp_path_factory.mktemp("injection-servers")
    conf = cfg.ConfigOpts()
    config.register_opts(conf)
    conf([], project="mininova", default_config_files=[])
    conf.set_override("state_path", str(tmp))
    conf.set_override("image_cache_path", str(tmp / "_base"), group="compute")
    url = config.database_url(conf)
    migration.db_sync(url)
    db = Database(url)
    image = register_blank_image(conf, db, tmp)
    app = create_app(conf, db, Recorder(), Recorder())
    token = token_for(db, "p1", "member")
    client = app.test_client()
    r = client.post(ROOT + "/servers", headers={"X-Auth-Token": token}, json={
        "server": {"name": "target", "imageRef": image, "flavorRef": "1"}})
    assert r.status_code == 202, r.get_data(as_text=True)
    yield app, token, image, r.get_json()["server"]["id"]
    db.dispose()


@pytest.fixture
def call(env):
    app, token, _, _ = env
    client = app.test_client()

    def request(method, path, **kwargs):
        return getattr(client, method)(ROOT + path, headers={"X-Auth-Token": token}, **kwargs)
    return request


def not_a_500(r):
    assert r.status_code < 500, r.get_data(as_text=True)[:500]
    if r.status_code >= 400:
        fault(r, r.status_code)
    return r


@pytest.mark.parametrize("segment", SEGMENTS + ["%FF%FE", "%2e%2e", "9" * 40, "x" * 3000])
@pytest.mark.parametrize("method", ["get", "put", "delete"])
def test_hostile_server_ids(call, method, segment):
    kwargs = {"json": {"server": {"name": "x"}}} if method == "put" else {}
    r = call(method, "/servers/" + segment, **kwargs)
    message = fault(r, 400, 404)
    assert len(message) < 400
    if "%00" in segment:
        assert r.status_code == 400 and "NUL" in message


@pytest.mark.parametrize("key", ["name", "status", "image", "flavor", "ip", "ip6",
                                 "changes-since", "limit", "marker", "all_tenants",
                                 "project_id", "tenant_id", "deleted", "sort_key"])
@pytest.mark.parametrize("value", SEGMENTS + ["%00", "(", "[", "*", "(a+)+$", "%FF"])
@pytest.mark.parametrize("collection", ["/servers", "/servers/detail"])
def test_hostile_list_filters(call, collection, key, value):
    r = not_a_500(call("get", "%s?%s=%s" % (collection, key, value)))
    if value == "%00" and key not in ("deleted", "sort_key", "all_tenants"):
        assert r.status_code == 400
    if r.status_code == 200:
        assert isinstance(r.get_json()["servers"], list)


def _create_body(image):
    return {"server": {"name": "vm", "imageRef": image, "flavorRef": "1", "adminPass": "p",
                       "metadata": {"k": "v"}, "accessIPv4": "192.0.2.1",
                       "accessIPv6": "::1", "OS-DCF:diskConfig": "AUTO", "key_name": "kp",
                       "security_groups": [{"name": "default"}], "availability_zone": "nova",
                       "user_data": "aGk=", "networks": [{"uuid": "u"}],
                       "block_device_mapping_v2": [{"uuid": image, "source_type": "image",
                                                    "destination_type": "local",
                                                    "boot_index": "0"}]},
            "os:scheduler_hints": {"group": "g"}}


@pytest.mark.parametrize("value", VALUES)
def test_hostile_values_in_every_create_field(env, call, value):
    """Each string of a create body replaced by a hostile value: never a
    500 (a value valid there may even create a VM, which is deleted)."""
    _, _, image, _ = env
    body = _create_body(image)
    for field_path in _string_paths(body):
        hostile = json.loads(json.dumps(body))
        _set(hostile, field_path, value)
        data = json.dumps(hostile).encode("utf-8", "surrogatepass")
        r = not_a_500(call("post", "/servers", data=data, content_type="application/json"))
        if r.status_code == 202:
            not_a_500(call("delete", "/servers/" + r.get_json()["server"]["id"]))


@pytest.mark.parametrize("value", VALUES)
@pytest.mark.parametrize("field", ["name", "accessIPv4", "accessIPv6", "other"])
def test_hostile_values_in_an_update(env, call, field, value):
    _, _, _, server_id = env
    data = json.dumps({"server": {field: value}}).encode("utf-8", "surrogatepass")
    r = not_a_500(call("put", "/servers/" + server_id, data=data,
                       content_type="application/json"))
    if r.status_code == 200:
        call("put", "/servers/" + server_id, json={"server": {"name": "target"}})


@pytest.mark.parametrize("method,path", [("post", "/servers"), ("put", "/servers/%s")])
@pytest.mark.parametrize("data", [b"", b"null", b"[]", b"\"x\"", b"{", b"[" * 100000,
                                  b'{"server": "\\ud800"}', b"\xff\xfe",
                                  b'{"server": {"name": {"a": {"b": [[[[1]]]]}}}}'])
def test_malformed_bodies(env, call, method, path, data):
    _, _, _, server_id = env
    path = path % server_id if "%s" in path else path
    fault(call(method, path, data=data, content_type="application/json"), 400)


@pytest.mark.parametrize("method,path", [("post", "/servers"), ("put", "/servers/%s")])
def test_ten_megabyte_bodies_and_wrong_types(env, call, method, path):
    _, _, _, server_id = env
    path = path % server_id if "%s" in path else path
    assert "too large" in fault(call(method, path, data=TEN_MB,
                                     content_type="application/json"), 413)
    fault(call(method, path, data=b"{}", content_type="text/plain"), 415)
