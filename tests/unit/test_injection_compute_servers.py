"""Hostile input on the server sub-resources of /compute/v2.1 (actions,
addresses, instance actions, metadata): test_injection's hostile strings in
path parameters, action names and argument values, malformed and 10 MB
bodies, wrong content types. Every answer is a 4xx in Nova's fault shape (or
a success where the value is valid there), never a 500."""
import json
import urllib.parse

import pytest

from common import states
from common.db import api as db_api
from nova_api.app import create_app
from tests.conftest import Recorder
from tests.unit.conftest import token_for
from tests.unit.test_injection import HOSTILE, TEN_MB
from tests.unit.test_injection_compute_admin import _set, _string_paths, fault

ROOT = "/compute/v2.1"
SEGMENTS = [urllib.parse.quote(v.encode("utf-8", "surrogatepass"), safe="") for v in HOSTILE]
VALUES = HOSTILE + [None, 1, -1, 1.5, True, [], {}, "\ud800", 10 ** 40]


class ConsoleCompute(Recorder):
    def get_console_output(self, ctxt, host, instance_id, lines):
        return "boot\n" * 5


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """One API, database and stopped server for the module (the cases
    never start it: a valid action is one it refuses in that state)."""
    from oslo_config import cfg
    from common import config
    from common.db import migration
    from common.db.session import Database
    tmp = tmp_path_factory.mktemp("injection-compute-servers")
    conf = cfg.ConfigOpts()
    config.register_opts(conf)
    conf([], project="mininova", default_config_files=[])
    conf.set_override("state_path", str(tmp))
    url = config.database_url(conf)
    migration.db_sync(url)
    db = Database(url)
    app = create_app(conf, db, Recorder(), ConsoleCompute())
    token = token_for(db, "p1", "member")
    with db.transaction() as s:
        server = db_api.instance_insert(
            s, name="vm1", project_id="p1", user_id="u", image_id="i", flavor_id="1",
            vcpus=1, memory_mb=128, root_gb=1, vm_state=states.STOPPED, host="node1")["id"]
    yield app, token, server
    db.dispose()


@pytest.fixture
def call(env):
    app, token, server = env
    client = app.test_client()

    def request(method, path, **kwargs):
        return getattr(client, method)(ROOT + path.replace("{id}", server),
                                       headers={"X-Auth-Token": token}, **kwargs)
    return request


@pytest.mark.parametrize("segment", SEGMENTS + ["%FF%FE", "%2e%2e", "9" * 40])
def test_hostile_server_ids(call, segment):
    message = fault(call("post", "/servers/%s/action" % segment, json={"os-stop": None}),
                    400, 404)
    if "%00" in segment:
        assert "NUL" in message


GET_PATHS = ["/servers/%s/ips", "/servers/{id}/ips/%s", "/servers/%s/ips/mininova",
             "/servers/%s/os-instance-actions", "/servers/{id}/os-instance-actions/%s",
             "/servers/%s/os-instance-actions/req-1", "/servers/%s/metadata",
             "/servers/{id}/metadata/%s", "/servers/%s/metadata/k"]


@pytest.mark.parametrize("segment", SEGMENTS + ["%FF%FE", "%2e%2e", "9" * 40, "x" * 5000])
@pytest.mark.parametrize("path", GET_PATHS)
def test_hostile_path_segments_of_reads(call, path, segment):
    message = fault(call("get", path % segment), 400, 404)
    assert len(message) < 300
    if "%00" in segment:
        assert "NUL" in message


@pytest.mark.parametrize("name", HOSTILE + ["x" * 10000, "\ud800"])
def test_hostile_action_names(call, name):
    data = json.dumps({name: None}).encode("utf-8", "surrogatepass")
    message = fault(call("post", "/servers/{id}/action", data=data,
                         content_type="application/json"), 400)
    assert len(message) < 300


@pytest.mark.parametrize("body", [
    {"reboot": {"type": "SOFT"}}, {"os-getConsoleOutput": {"length": "3"}},
    {"rebuild": {"imageRef": "x", "name": "n", "adminPass": "p"}},
    {"rebuild": {"imageRef": "x", "metadata": {"k": "v"}}},
])
@pytest.mark.parametrize("value", VALUES)
def test_hostile_action_arguments(call, body, value):
    for field_path in _string_paths(body):
        hostile = json.loads(json.dumps(body))
        _set(hostile, field_path, value)
        data = json.dumps(hostile).encode("utf-8", "surrogatepass")
        r = call("post", "/servers/{id}/action", data=data, content_type="application/json")
        assert r.status_code < 500, (field_path, r.get_data(as_text=True)[:300])
        if r.status_code >= 400:
            fault(r, r.status_code)


@pytest.mark.parametrize("action", ["os-stop", "pause", "unpause", "suspend", "resume"])
@pytest.mark.parametrize("value", VALUES)
def test_hostile_values_of_argumentless_actions(call, action, value):
    data = json.dumps({action: value}).encode("utf-8", "surrogatepass")
    r = call("post", "/servers/{id}/action", data=data, content_type="application/json")
    # null or {}: refused in the stopped state (409); anything else: 400
    fault(r, 409 if value in (None, {}) and not isinstance(value, bool) else 400)


@pytest.mark.parametrize("data", [b"", b"null", b"[]", b"\"x\"", b"{", b"[" * 100000,
                                  b'{"a": "\\ud800"}', b"\xff\xfe"])
def test_malformed_bodies(call, data):
    fault(call("post", "/servers/{id}/action", data=data, content_type="application/json"),
          400)


def test_ten_megabyte_bodies_and_wrong_types(call):
    assert "too large" in fault(call("post", "/servers/{id}/action", data=TEN_MB,
                                     content_type="application/json"), 413)
    fault(call("post", "/servers/{id}/action", data=b'{"os-stop": null}',
               content_type="text/plain"), 415)


WRITES = [("put", "/servers/{id}/metadata", {"metadata": {"k": "v"}}),
          ("post", "/servers/{id}/metadata", {"metadata": {"k": "v"}}),
          ("put", "/servers/{id}/metadata/k", {"meta": {"k": "v"}})]


@pytest.mark.parametrize("method,path,body", WRITES)
@pytest.mark.parametrize("value", VALUES)
def test_hostile_metadata_keys_and_values(call, method, path, body, value):
    """Each value, and (when a string) each key, replaced by a hostile one."""
    hostile_bodies = []
    for field_path in _string_paths(body):
        hostile = json.loads(json.dumps(body))
        _set(hostile, field_path, value)
        hostile_bodies.append(hostile)
    if isinstance(value, str):
        (outer, inner), = body.items()
        hostile_bodies.append({outer: {value: "v"}})
    for hostile in hostile_bodies:
        data = json.dumps(hostile).encode("utf-8", "surrogatepass")
        r = call(method, path, data=data, content_type="application/json")
        assert r.status_code < 500, (hostile, r.get_data(as_text=True)[:300])
        if r.status_code >= 400:
            fault(r, r.status_code)


@pytest.mark.parametrize("method,path", [(m, p) for m, p, _ in WRITES])
@pytest.mark.parametrize("data", [b"", b"null", b"[]", b"\"x\"", b"{", b"[" * 100000,
                                  b'{"a": "\\ud800"}', b"\xff\xfe"])
def test_malformed_metadata_bodies(call, method, path, data):
    fault(call(method, path, data=data, content_type="application/json"), 400)


@pytest.mark.parametrize("method,path", [(m, p) for m, p, _ in WRITES])
def test_ten_megabyte_metadata_bodies_and_wrong_types(call, method, path):
    assert "too large" in fault(call(method, path, data=TEN_MB,
                                     content_type="application/json"), 413)
    fault(call(method, path, data=b'{"metadata": {}}', content_type="text/plain"), 415)
