"""The compute surface's shared plumbing: version documents without a token,
microversion negotiation (2.1 only) and its headers, the project id in the
URL, paging and the time formats."""
import datetime

import pytest
from flask import g, jsonify

from nova_api.app import create_app
from nova_api.openstack import compute
from nova_api.openstack.compute import paging, resource, views
from tests.unit.conftest import auth_headers

BASE = "http://198.51.100.7:8774"

# A stand-in resource, made as every compute resource is.
echo = resource.blueprint("compute_test_echo", __name__)


@echo.get("/echo/<item>")
def _echo(item):
    limit, marker = paging.limit_and_marker()
    items = [{"id": "a"}, {"id": "b"}][:limit]
    return jsonify({"item": item, "version": list(g.compute_version),
                    "links": views.links("echo", item), "limit": limit, "marker": marker,
                    **paging.links("echo/x", items, limit)})


@pytest.fixture
def app(conf, db, recorder):
    app = create_app(conf, db, recorder(), recorder())
    resource.register(app, (echo,))
    return app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def headers(db):
    return auth_headers(db, "p1")


def test_compute_root_lists_both_versions_without_a_token(client):
    for path in ("/compute", "/compute/"):
        r = client.get(path, base_url=BASE)
        assert r.status_code == 200
        versions = r.get_json()["versions"]
        assert [v["id"] for v in versions] == ["v2.0", "v2.1"]
        assert versions[1] == {"id": "v2.1", "status": "CURRENT", "version": "2.1",
                               "min_version": "2.1", "updated": "2013-07-23T11:33:21Z",
                               "links": [{"rel": "self", "href": BASE + "/compute/v2.1/"}]}
        assert versions[0]["links"] == [{"rel": "self", "href": BASE + "/compute/v2/"}]


@pytest.mark.parametrize("path,vid", [("/compute/v2.1", "v2.1"), ("/compute/v2.1/", "v2.1"),
                                      ("/compute/v2", "v2.0"), ("/compute/v2/", "v2.0")])
def test_each_version_document_has_the_self_link_of_the_list(client, path, vid):
    r = client.get(path, base_url=BASE)
    assert r.status_code == 200
    doc = r.get_json()["version"]
    listed = {v["id"]: v for v in client.get("/compute/", base_url=BASE).get_json()["versions"]}
    assert doc["id"] == vid and doc["links"] == listed[vid]["links"]
    assert doc["media-types"][0]["type"] == "application/vnd.openstack.compute+json;version=2.1"


@pytest.mark.parametrize("sent", [
    {}, {"OpenStack-API-Version": "compute 2.1"}, {"OpenStack-API-Version": "COMPUTE latest"},
    {"OpenStack-API-Version": "volume 3.5, compute 2.1"},
    {"X-OpenStack-Nova-API-Version": "2.1"}, {"X-OpenStack-Nova-API-Version": "latest"},
    {"OpenStack-API-Version": "volume 3.70"}])
def test_2_1_is_what_is_served(client, headers, sent):
    r = client.get("/compute/v2.1/echo/x", headers=dict(headers, **sent))
    assert r.status_code == 200 and r.get_json()["version"] == [2, 1]
    assert r.headers["OpenStack-API-Version"] == "compute 2.1"
    assert r.headers["X-OpenStack-Nova-API-Version"] == "2.1"
    assert r.headers["Vary"] == "OpenStack-API-Version, X-OpenStack-Nova-API-Version"


@pytest.mark.parametrize("sent,version", [
    ({"OpenStack-API-Version": "compute 2.2"}, "2.2"),
    ({"X-OpenStack-Nova-API-Version": "2.99"}, "2.99"),
    ({"OpenStack-API-Version": "compute 3.0"}, "3.0"),
    ({"OpenStack-API-Version": "compute 2.0"}, "2.0")])
def test_other_versions_are_406(client, headers, sent, version):
    r = client.get("/compute/v2.1/echo/x", headers=dict(headers, **sent))
    assert r.status_code == 406
    assert r.get_json() == {"computeFault": {"code": 406, "message": (
        "Version %s is not supported by the API. Minimum is 2.1 and maximum is 2.1." % version)}}
    assert r.headers["OpenStack-API-Version"] == "compute 2.1"
    assert r.headers["x-compute-request-id"].startswith("req-")


@pytest.mark.parametrize("value", ["2", "2.01", "abc", "2.1.1", "", "v2.1", "2.-1"])
def test_malformed_versions_are_400(client, headers, value):
    r = client.get("/compute/v2.1/echo/x",
                   headers=dict(headers, **{"X-OpenStack-Nova-API-Version": value}))
    assert r.status_code == 400
    assert "is of invalid format. Must be of format MajorNum.MinorNum." in (
        r.get_json()["badRequest"]["message"])


def test_a_token_comes_before_the_version(client):
    r = client.get("/compute/v2.1/echo/x", headers={"X-OpenStack-Nova-API-Version": "9.9"})
    assert r.status_code == 401


def test_the_project_id_in_the_url_is_served_and_kept_in_links(client, headers):
    r = client.get("/compute/v2.1/p1/echo/x?limit=2&foo=bar", headers=headers, base_url=BASE)
    assert r.status_code == 200
    body = r.get_json()
    assert body["links"] == [
        {"rel": "self", "href": BASE + "/compute/v2.1/p1/echo/x"},
        {"rel": "bookmark", "href": BASE + "/compute/p1/echo/x"}]
    assert body["echo_links"] == [{"rel": "next", "href": BASE + (
        "/compute/v2.1/p1/echo/x?limit=2&foo=bar&marker=b")}]


def test_another_projects_id_in_the_url_is_400(client, headers):
    r = client.get("/compute/v2.1/p2/echo/x", headers=headers)
    assert r.status_code == 400 and "project_id" in r.get_json()["badRequest"]["message"]


@pytest.mark.parametrize("query,status,limit", [
    ("", 200, 1000), ("?limit=0", 200, 0), ("?limit=5", 200, 5), ("?limit=5000", 200, 1000),
    ("?limit=-1", 400, None), ("?limit=x", 400, None), ("?limit=1.5", 400, None)])
def test_limits(client, headers, query, status, limit):
    r = client.get("/compute/v2.1/echo/x" + query, headers=headers)
    assert r.status_code == status
    if status == 200:
        assert r.get_json()["limit"] == limit
    else:
        assert "limit" in r.get_json()["badRequest"]["message"]


def test_no_next_link_for_a_page_shorter_than_its_limit(client, headers):
    assert "echo_links" not in client.get("/compute/v2.1/echo/x?limit=5",
                                          headers=headers).get_json()


def test_unknown_paths_are_nova_faults_with_the_version_headers(client, headers):
    r = client.get("/compute/v2.1/nothing-here/at/all", headers=headers)
    assert r.status_code == 404 and set(r.get_json()) == {"itemNotFound"}
    assert r.headers["X-OpenStack-Nova-API-Version"] == "2.1"


def test_time_formats():
    t = datetime.datetime(2026, 1, 2, 3, 4, 5, 123456)
    assert views.isotime(t) == "2026-01-02T03:04:05Z"
    assert views.naive_isotime(t) == "2026-01-02T03:04:05.123456"
    assert views.naive_isotime(t.replace(microsecond=0)) == "2026-01-02T03:04:05.000000"
    assert views.isotime(None) is None and views.naive_isotime(None) is None


def test_every_listed_blueprint_is_made_by_the_resource_factory():
    for bp in compute.BLUEPRINTS:
        assert resource.microversion.negotiate in bp.before_request_funcs[None]
