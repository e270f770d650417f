import concurrent.futures
import os

import pytest

from common import exception
from nova_api import imagestore
from common.db import api as db_api
from nova_api.app import create_app
from tests.unit.conftest import auth_headers, token_for


def OTHER(db):
    return auth_headers(db, "other")


@pytest.fixture
def api(conf, db, image, recorder):
    conductor, compute = recorder(), recorder()
    app = create_app(conf, db, conductor, compute)
    client = app.test_client()
    client.environ_base["HTTP_X_AUTH_TOKEN"] = token_for(db, "default", "admin")
    client.conductor, client.compute = conductor, compute
    return client


def create(api, name="web1", **kw):
    return api.post("/v1/vms", json=dict({"name": name, "image": "blank", "flavor": "m1.tiny"}, **kw))


def test_create_casts_the_build_to_the_conductor(api):
    r = create(api)
    assert r.status_code == 202
    vm = r.get_json()["vm"]
    assert vm["status"] == "BUILD" and vm["task_state"] == "scheduling"
    assert r.headers["Location"] == "/v1/vms/" + vm["id"]
    [(method, args, kwargs)] = api.conductor.calls
    assert (method, args) == ("build_instances", (vm["id"],))
    assert isinstance(kwargs["action_id"], int)  # the create's action travels along
    assert vm["flavor"] == {"id": "1", "name": "m1.tiny", "vcpus": 1, "ram": 128, "disk": 1}
    assert vm["image"]["name"] == "blank"


def test_show_by_id_and_name_and_list(api):
    vm = create(api).get_json()["vm"]
    assert api.get("/v1/vms/" + vm["id"]).get_json()["vm"]["name"] == "web1"
    assert api.get("/v1/vms/web1").get_json()["vm"]["id"] == vm["id"]
    assert [v["id"] for v in api.get("/v1/vms").get_json()["vms"]] == [vm["id"]]


def test_projects_are_isolated(api, db):
    vm = create(api).get_json()["vm"]
    r = api.get("/v1/vms/" + vm["id"], headers=OTHER(db))
    assert r.status_code == 404
    assert api.get("/v1/vms", headers=OTHER(db)).get_json()["vms"] == []


def test_delete_without_host_is_done_by_api(api):
    vm = create(api).get_json()["vm"]
    assert api.delete("/v1/vms/web1").status_code == 202
    assert api.get("/v1/vms/web1").status_code == 404
    assert api.compute.calls == []
    assert api.delete("/v1/vms/web1").status_code == 404
    # The name is free again.
    assert create(api).status_code == 202
    assert vm


def test_delete_with_host_casts_to_compute(api, db):
    vm = create(api).get_json()["vm"]
    with db.transaction() as s:
        db_api.instance_update_if(s, vm["id"], {"host": "h1", "task_state": "spawning"})
    assert api.delete("/v1/vms/web1").status_code == 202
    assert api.compute.calls == [("terminate_instance", ("h1", vm["id"]), {})]
    shown = api.get("/v1/vms/web1").get_json()["vm"]
    assert shown["status"] == "DELETING"
    assert api.delete("/v1/vms/web1").status_code == 202  # twice: harmless


def test_duplicate_names_conflict(api):
    assert create(api).status_code == 202
    r = create(api)
    assert r.status_code == 409
    assert "web1" in r.get_json()["error"]["message"]


def test_concurrent_duplicate_names_one_wins(api):
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        codes = list(pool.map(lambda _: create(api, "dup").status_code, range(10)))
    assert sorted(codes) == [202] + [409] * 9


@pytest.mark.parametrize("body,code,needle", [
    ({"image": "blank", "flavor": "m1.tiny"}, 400, "'name'"),
    ({"name": 1, "image": "blank", "flavor": "m1.tiny"}, 400, "'name'"),
    ({"name": "bad/name", "image": "blank", "flavor": "m1.tiny"}, 400, "'name'"),
    ({"name": "", "image": "blank", "flavor": "m1.tiny"}, 400, "'name'"),
    ({"name": "ok", "image": "blank"}, 400, "'flavor'"),
    ({"name": "ok", "image": "blank", "flavor": "m1.tiny", "typo": 1}, 400, "typo"),
    ({"name": "ok", "image": "missing", "flavor": "m1.tiny"}, 404, "missing"),
    ({"name": "ok", "image": "blank", "flavor": "missing"}, 404, "missing"),
    (["not", "an", "object"], 400, "object"),
])
def test_bad_bodies(api, body, code, needle):
    r = api.post("/v1/vms", json=body)
    assert r.status_code == code, r.get_json()
    assert needle in r.get_json()["error"]["message"]
    assert api.conductor.calls == []


def test_malformed_json_and_content_type(api):
    r = api.post("/v1/vms", data=b"{nope", content_type="application/json")
    assert r.status_code == 400 and "malformed JSON" in r.get_json()["error"]["message"]
    r = api.post("/v1/vms", data=b"name=x", content_type="application/x-www-form-urlencoded")
    assert r.status_code == 415


def test_body_too_large(api):
    r = api.post("/v1/vms", data=b"{" + b" " * (2 * 1024 * 1024) + b"}",
                 content_type="application/json")
    assert r.status_code == 413


def test_broker_down_leaves_nothing(conf, db, image, recorder):
    app = create_app(conf, db, recorder(fail_with=exception.ServiceUnavailable(
        reason="message broker unreachable")), recorder())
    api = app.test_client()
    api.environ_base["HTTP_X_AUTH_TOKEN"] = token_for(db, "default")
    r = create(api)
    assert r.status_code == 503
    assert "broker" in r.get_json()["error"]["message"]
    assert api.get("/v1/vms").get_json()["vms"] == []
    assert create(api).status_code == 503  # and the name is not held


def test_flavor_smaller_than_image_minimum(api, db, image):
    with db.transaction() as s:
        db_api.image_get(s, image).min_disk = 5
    r = create(api)
    assert r.status_code == 400 and "5 GB" in r.get_json()["error"]["message"]


def test_request_id_header_and_versions(api):
    r = api.get("/")
    assert r.status_code == 200 and r.headers["X-Request-Id"].startswith("req-")
    assert api.get("/v1").get_json()["version"]["id"] == "v1"
    assert api.get("/v1/flavors").get_json()["flavors"][0]["name"] == "m1.tiny"
    assert api.put("/v1/vms").status_code == 405
    assert api.get("/v1/nope").status_code == 404
    assert api.get("/v1/vms", headers={"X-Auth-Token": "mn-nope"}).status_code == 401


def test_image_store_file_is_sane(conf, image):
    assert os.path.exists(os.path.join(imagestore.store_path(conf), image))


@pytest.fixture
def umask_022():
    """The usual umask, which leaves files made with the default mode world-readable."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_stored_images_are_not_world_readable(api, conf, tmp_path, umask_022):
    source = tmp_path / "source.qcow2"
    source.write_bytes(b"QFI\xfb" + b"\0" * 1020)
    os.chmod(source, 0o644)
    added = imagestore.import_file(conf, str(source))[1]              # mininova-manage image add
    r = api.post("/v1/images?name=up", data=b"QFI\xfb" + b"\1" * 100,
                 content_type="application/octet-stream")             # POST /v1/images
    uploaded = os.path.join(imagestore.store_path(conf), r.get_json()["image"]["id"])
    for path in (added, uploaded):
        assert os.stat(path).st_mode & 0o777 == 0o640, path
    assert os.stat(source).st_mode & 0o777 == 0o644  # not ours: left as it was


def test_services_disable_enable_and_hosts(api, db):
    from nova_conductor.manager import ConductorManager
    from common import context
    ConductorManager(db).service_heartbeat(context.get_admin_context(), "h1", "mininova-compute",
                                           {"vcpus": 2, "memory_mb": 1000, "local_gb": 10})
    svc, = api.get("/v1/services").get_json()["services"]
    assert (svc["host"], svc["state"], svc["status"]) == ("h1", "up", "enabled")
    r = api.put("/v1/services/%d" % svc["id"], json={"status": "disabled",
                                                     "disabled_reason": "maintenance"})
    assert r.status_code == 200
    assert r.get_json()["service"]["disabled_reason"] == "maintenance"
    assert api.put("/v1/services/%d" % svc["id"], json={"status": "off"}).status_code == 400
    assert api.put("/v1/services/999", json={"status": "enabled"}).status_code == 404
    host = api.get("/v1/hosts/h1").get_json()["host"]
    assert host["status"] == "disabled"
    assert host["memory_mb"] == {"total": 1000, "allocation_ratio": 1.5, "capacity": 1500,
                                 "used": 0, "free": 1500}
    assert [h["name"] for h in api.get("/v1/hosts").get_json()["hosts"]] == ["h1"]
    assert api.get("/v1/hosts/nope").status_code == 404


def test_server_groups(api, db):
    r = api.post("/v1/server-groups", json={"name": "web", "policy": "anti-affinity"})
    assert r.status_code == 201
    group = r.get_json()["server_group"]
    assert api.post("/v1/server-groups", json={"name": "x", "policy": "sometimes"}).status_code == 400
    vm = create(api, group=group["id"]).get_json()["vm"]
    assert vm["server_group"] == group["id"]
    shown = api.get("/v1/server-groups/" + group["id"]).get_json()["server_group"]
    assert shown["members"] == [vm["id"]]
    assert api.get("/v1/server-groups", headers=OTHER(db)).get_json()[
        "server_groups"] == []
    assert api.get("/v1/server-groups/" + group["id"],
                   headers=OTHER(db)).status_code == 404
    assert create(api, "web2", group="no-such-group").status_code == 404
    assert api.delete("/v1/server-groups/" + group["id"]).status_code == 204
    assert api.get("/v1/server-groups/" + group["id"]).status_code == 404


def test_image_upload_and_download(api, conf):
    data = b"QFI\xfb" + bytes(range(256)) * 40
    r = api.post("/v1/images?name=uploaded&min_ram=64&min_disk=1", data=data,
                 content_type="application/octet-stream")
    assert r.status_code == 201, r.get_json()
    image = r.get_json()["image"]
    import hashlib
    assert image["checksum"] == hashlib.sha256(data).hexdigest()
    assert (image["size"], image["min_ram"], image["min_disk"]) == (len(data), 64, 1)
    got = api.get("/v1/images/%s/file" % image["id"])
    assert got.status_code == 200 and got.data == data
    assert got.headers["X-Image-Sha256"] == image["checksum"]
    # Names may repeat (as in Glance); a lookup by a repeated name is 409.
    again = api.post("/v1/images?name=uploaded", data=data,
                     content_type="application/octet-stream")
    assert again.status_code == 201
    r = api.get("/v1/images/uploaded")
    assert r.status_code == 409 and again.get_json()["image"]["id"] in r.get_json()["error"][
        "message"]
    # Not qcow2, bad parameters, wrong content type: 4xx, nothing stored.
    before = set(os.listdir(imagestore.store_path(conf)))
    for query, body, ctype, code in [
            ("name=raw", b"not an image at all", "application/octet-stream", 400),
            ("name=bad/name", data, "application/octet-stream", 400),
            ("name=x&min_ram=-1", data, "application/octet-stream", 400),
            ("name=x&color=red", data, "application/octet-stream", 400),
            ("", data, "application/octet-stream", 400),
            ("name=x", data, "application/json", 415),
            ("name=empty", b"", "application/octet-stream", 400)]:
        r = api.post("/v1/images?" + query, data=body, content_type=ctype)
        assert r.status_code == code, (query, r.get_json())
    assert set(os.listdir(imagestore.store_path(conf))) == before
    assert api.get("/v1/images/nope/file").status_code == 404
