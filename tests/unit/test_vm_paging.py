"""GET /v1/vms pages as Nova's server list: ?limit=N&marker=<id>, capped by
[api] max_limit, a "next" link in vms_links while more remain; and the list
shows exactly what GET /v1/vms/<id> shows."""
import datetime
import re
import urllib.parse

import pytest
import sqlalchemy as sa

from common.db.models import Instance
from nova_api import views
from nova_api.app import create_app
from tests.unit.conftest import token_for


@pytest.fixture
def api(conf, db, image, recorder):
    conf.set_override("max_limit", 4, group="api")
    client = create_app(conf, db, recorder(), recorder()).test_client()
    client.environ_base["HTTP_X_AUTH_TOKEN"] = token_for(db, "default")
    return client


def create(api, name):
    r = api.post("/v1/vms", json={"name": name, "image": "blank", "flavor": "m1.tiny"})
    assert r.status_code == 202, r.get_json()
    return r.get_json()["vm"]


@pytest.fixture
def ten(api, db):
    """Ten VMs, the first five with the same created_at (ties go by id)."""
    ids = [create(api, "vm%d" % i)["id"] for i in range(10)]
    same = datetime.datetime(2030, 1, 1)
    with db.transaction() as s:
        s.execute(sa.update(Instance).where(Instance.id.in_(ids[:5])).values(created_at=same))
    listed = []
    marker = None
    while True:  # the full order, page by page
        r = api.get("/v1/vms", query_string={"marker": marker} if marker else {})
        listed += r.get_json()["vms"]
        if "vms_links" not in r.get_json():
            break
        marker = listed[-1]["id"]
    return listed


def next_query(body):
    link, = body["vms_links"]
    assert link["rel"] == "next"
    parts = urllib.parse.urlsplit(link["href"])
    assert parts.path == "/v1/vms"
    return dict(urllib.parse.parse_qsl(parts.query))


def test_pages_follow_the_next_links(api, ten):
    assert len(ten) == 10 and len({v["id"] for v in ten}) == 10
    pages, query = [], {"limit": "3"}
    while True:
        body = api.get("/v1/vms", query_string=query).get_json()
        pages.append([v["id"] for v in body["vms"]])
        if "vms_links" not in body:
            break
        query = next_query(body)
        assert query["limit"] == "3" and query["marker"] == pages[-1][-1]
    assert pages == [[v["id"] for v in ten[i:i + 3]] for i in range(0, 10, 3)]


def test_max_limit_caps_any_limit(api, ten):
    for query in ({}, {"limit": "5"}, {"limit": str(2 ** 31 - 1)}):
        body = api.get("/v1/vms", query_string=query).get_json()
        assert [v["id"] for v in body["vms"]] == [v["id"] for v in ten[:4]]
        assert next_query(body)["marker"] == ten[3]["id"]


def test_no_next_link_on_the_last_page(api, ten):
    body = api.get("/v1/vms", query_string={"marker": ten[5]["id"]}).get_json()
    assert [v["id"] for v in body["vms"]] == [v["id"] for v in ten[6:10]]
    assert "vms_links" not in body  # exactly a full page left: no empty page after it


def test_a_deleted_marker_still_works(api, ten):
    assert api.delete("/v1/vms/" + ten[2]["id"]).status_code == 202
    body = api.get("/v1/vms", query_string={"marker": ten[2]["id"], "limit": 2}).get_json()
    assert [v["id"] for v in body["vms"]] == [ten[3]["id"], ten[4]["id"]]


@pytest.mark.parametrize("query, field", [
    ({"limit": "0"}, "limit"), ({"limit": "-1"}, "limit"), ({"limit": "x"}, "limit"),
    ({"limit": "1.5"}, "limit"), ({"limit": str(2 ** 31)}, "limit"),
    ({"marker": ""}, "marker"), ({"marker": "a\x01b"}, "marker"),
])
def test_bad_query_parameters_are_400_naming_them(api, query, field):
    r = api.get("/v1/vms", query_string=query)
    assert r.status_code == 400, r.get_json()
    assert "'%s'" % field in r.get_json()["error"]["message"]


def test_unknown_marker_is_400(api, db, ten):
    other = token_for(db, "other")
    for marker in ("no-such-vm", "3f1b7a34-5d1c-4c1e-9d59-0a8d7f0c0c11", ten[0]["name"]):
        r = api.get("/v1/vms", query_string={"marker": marker})
        assert r.status_code == 400
        assert r.get_json()["error"]["message"] == (
            "Invalid request: marker %s not found." % marker)
    # Another project's VM is no marker either.
    r = api.get("/v1/vms", query_string={"marker": ten[0]["id"]},
                headers={"X-Auth-Token": other})
    assert r.status_code == 400


def test_list_shows_what_show_shows(api, ten, db):
    with db.transaction() as s:  # every field set, times with microseconds
        s.execute(sa.update(Instance).where(Instance.id == ten[0]["id"]).values(
            host="h1", fault="boom", ip_address="10.0.0.5", task_state=None,
            vm_state="error", launched_at=datetime.datetime(2031, 2, 3, 4, 5, 6, 789)))
    listed = api.get("/v1/vms", query_string={"limit": 1}).get_json()["vms"][0]
    shown = api.get("/v1/vms/" + ten[0]["id"]).get_json()["vm"]
    # Only one VM's answers carry its keypair's name and metadata.
    assert (shown.pop("key_name"), shown.pop("metadata")) == (None, {})
    assert listed == shown
    assert listed["status"] == "ERROR" and listed["fault"] == {"message": "boom"}
    assert listed["launched_at"] == "2031-02-03T04:05:06Z"
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\Z", listed["created_at"])
    assert listed["addresses"] == [{"mac": listed["addresses"][0]["mac"], "ip": "10.0.0.5"}]
    assert listed["image"]["name"] == "blank" and listed["flavor"]["name"] == "m1.tiny"


def test_isotime_keeps_the_format():
    for dt in (datetime.datetime(2024, 1, 2, 3, 4, 5), datetime.datetime(2024, 1, 2, 3, 4, 5, 1),
               datetime.datetime(1999, 12, 31, 23, 59, 59, 999999)):
        assert views.isotime(dt) == dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert views.isotime(None) is None
