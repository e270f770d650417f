"""Hostile input on the image API (test_injection.py's hostile strings aimed
at /image/v2): names, tags, property names and values, path parameters,
query filters, JSON patches, wrong types, surrogates and 10 MB bodies. Every
answer is a success that stores the value verbatim or a 4xx in the image
API's shape that does not echo it; never a 500."""
import json
import urllib.parse

import pytest

from nova_api.app import create_app
from tests.conftest import Recorder
from tests.unit.conftest import auth_headers
from tests.unit.test_injection import HOSTILE, TEN_MB

IMAGES = "/image/v2/images"
PATCH = "application/openstack-images-v2.1-json-patch"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """One API and database for the module, a member's token and one image."""
    from oslo_config import cfg
    from common import config
    from common.db import migration
    from common.db.session import Database
    tmp = tmp_path_factory.mktemp("injection-image")
    conf = cfg.ConfigOpts()
    config.register_opts(conf)
    conf([], project="mininova", default_config_files=[])
    conf.set_override("state_path", str(tmp))
    url = config.database_url(conf)
    migration.db_sync(url)
    db = Database(url)
    app = create_app(conf, db, Recorder(), Recorder())
    headers = auth_headers(db, "demo")
    r = app.test_client().post(IMAGES, json={"name": "target"}, headers=headers)
    yield app, headers, r.get_json()["id"]
    db.dispose()


@pytest.fixture
def call(env):
    app, headers, _ = env
    client = app.test_client()

    def send(method, path, **kw):
        kw["headers"] = dict(headers, **kw.get("headers", {}))
        return getattr(client, method)(path, **kw)
    return send


@pytest.fixture
def image_id(env):
    return env[2]


def check(r, *ok):
    """``r`` is one of the ``ok`` codes or a short 4xx error in Keystone's shape."""
    if r.status_code in ok:
        return r
    assert 400 <= r.status_code < 500, (r.status_code, r.get_data(as_text=True)[:500])
    body = r.get_json()["error"]
    assert body["code"] == r.status_code and body["message"]
    assert len(body["message"]) < 400, "the message must not echo the value"
    return r


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_names_tags_and_properties(call, value):
    for body in ({"name": value}, {"tags": [value]}, {"prop": value}, {value: "v"}):
        r = check(call("post", IMAGES, json=body), 201)
        if r.status_code == 201:
            shown = call("get", "%s/%s" % (IMAGES, r.get_json()["id"])).get_json()
            assert all(shown[k] == v if k != "tags" else shown[k] == v for k, v in body.items())


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_path_parameters(call, value, image_id):
    segment = urllib.parse.quote(value, safe="")
    for method, path in (("get", "%s/%s" % (IMAGES, segment)),
                         ("delete", "%s/%s" % (IMAGES, segment)),
                         ("get", "%s/%s/file" % (IMAGES, segment)),
                         ("put", "%s/%s/tags/x" % (IMAGES, segment)),
                         ("delete", "%s/%s/tags/%s" % (IMAGES, image_id, segment))):
        check(call(method, path), 404)
    check(call("put", "%s/%s/file" % (IMAGES, segment), data=b"x",
               content_type="application/octet-stream"), 404)
    check(call("patch", "%s/%s" % (IMAGES, segment), json=[], content_type=PATCH), 404)
    check(call("put", "%s/%s/tags/%s" % (IMAGES, image_id, segment)), 204)


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_query_parameters(call, value):
    for key in ("name", "owner", "marker", "sort_key", "sort_dir", "sort", "status",
                "visibility", "tag", "limit", "size_min", "id", "protected", "color"):
        check(call("get", IMAGES, query_string={key: value}), 200)
    check(call("get", IMAGES, query_string={value: "x"}), 200)


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_patches(call, value, image_id):
    pointer = "/" + value.replace("~", "~0").replace("/", "~1")
    for change in ({"op": "add", "path": pointer, "value": "v"},
                   {"op": "replace", "path": "/name", "value": value},
                   {"op": "add", "path": "/tags", "value": [value]},
                   {"op": "remove", "path": pointer},
                   {"op": value, "path": "/name", "value": "x"},
                   {"op": "add", "path": value, "value": "x"}):
        check(call("patch", "%s/%s" % (IMAGES, image_id), json=[change], content_type=PATCH),
              200)


@pytest.mark.parametrize("body", [None, [], "text", 5, {"name": {"a": 1}}, {"tags": [1]},
                                  {"min_ram": 1e308}, {"min_ram": True}, {"id": 5},
                                  {"visibility": None}, {"protected": None}])
def test_wrong_types(call, body):
    check(call("post", IMAGES, json=body))


@pytest.mark.parametrize("text", ['{"name": "\\ud800"}', '{"\\udfff": "x"}',
                                  '{"tags": ["\\ud800"]}', '[' * 100000 + ']' * 100000])
def test_surrogates_and_nesting(call, text):
    check(call("post", IMAGES, data=text, content_type="application/json"))


def test_surrogates_and_garbage_in_patches(call, image_id):
    for text in ('[{"op": "add", "path": "/\\ud800", "value": "x"}]', "[{", "null", "{}"):
        check(call("patch", "%s/%s" % (IMAGES, image_id), data=text, content_type=PATCH))


def test_ten_megabyte_bodies(call, image_id):
    assert check(call("post", IMAGES, data=TEN_MB, content_type="application/json")
                 ).status_code == 413
    assert check(call("patch", "%s/%s" % (IMAGES, image_id), data=TEN_MB,
                      content_type=PATCH)).status_code == 413


@pytest.mark.parametrize("content_type", ["text/plain", "application/json; charset=utf-8x",
                                          "", "application/octet-stream"])
def test_content_types(call, image_id, content_type):
    check(call("post", IMAGES, data=json.dumps({"name": "x"}), content_type=content_type), 201)
    check(call("patch", "%s/%s" % (IMAGES, image_id), data="[]", content_type=content_type))
