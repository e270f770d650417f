"""The Glance v2 subset through Flask's test client: version discovery,
two-step create and upload, download, show, delete, visibility and
ownership, and every bad request answered 4xx naming what was wrong."""
import hashlib
import os
import struct

import pytest

from common.db import images as db_images
from nova_api import imagestore
from nova_api.app import create_app
from tests.unit.conftest import auth_headers

IMAGES = "/image/v2/images"


def qcow2(virtual_size=1 << 20, backing=False, version=3, length=4096):
    """A qcow2 header (and zeros) that passes or fails the format check."""
    header = b"QFI\xfb" + struct.pack(">IQIIQ", version, 512 if backing else 0, 0, 16,
                                       virtual_size)
    return (header + b"\0" * (length - len(header)))[:length]


class Caller:
    """A test client that sends one token with every request."""

    def __init__(self, client, headers):
        self.client, self.headers = client, headers

    def __getattr__(self, method):
        def call(path, **kw):
            kw["headers"] = dict(self.headers, **kw.get("headers", {}))
            return getattr(self.client, method)(path, **kw)
        return call

    def create(self, **body):
        body.setdefault("disk_format", "qcow2")
        body.setdefault("container_format", "bare")
        r = self.post(IMAGES, json=body)
        assert r.status_code == 201, r.get_data(as_text=True)
        return r.get_json()

    def upload(self, image_id, data, content_type="application/octet-stream"):
        return self.put("%s/%s/file" % (IMAGES, image_id), data=data, content_type=content_type)


@pytest.fixture
def app(conf, db, recorder):
    conf.set_override("max_image_bytes", 64 * 1024, group="api")
    return create_app(conf, db, recorder(), recorder())


@pytest.fixture
def member(app, db):
    return Caller(app.test_client(), auth_headers(db, "demo"))


@pytest.fixture
def other(app, db):
    return Caller(app.test_client(), auth_headers(db, "other"))


@pytest.fixture
def admin(app, db):
    return Caller(app.test_client(), auth_headers(db, "admin", "admin"))


@pytest.fixture
def reader(app, db):
    return Caller(app.test_client(), auth_headers(db, "demo", "reader"))


def error(r, code, *words):
    assert r.status_code == code, r.get_data(as_text=True)
    message = r.get_json()["error"]["message"]
    for word in words:
        assert word in message, message
    return message


# -- discovery -----------------------------------------------------------------

@pytest.mark.parametrize("path", ["/image", "/image/"])
def test_versions_without_a_token(app, path):
    r = app.test_client().get(path)
    assert r.status_code == 300
    assert r.get_json() == {"versions": [{"id": "v2.16", "status": "CURRENT", "links": [
        {"rel": "self", "href": "http://localhost/image/v2/"}]}]}
    assert r.headers["x-openstack-request-id"].startswith("req-")
    r = app.test_client().get("/image/versions")
    assert r.status_code == 200 and r.get_json()["versions"][0]["id"] == "v2.16"


def test_a_token_is_needed(app):
    r = app.test_client().get(IMAGES)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Keystone uri=")


# -- create, upload, download --------------------------------------------------

def test_two_step_create_upload_download(member, conf):
    image = member.create(name="tiny", min_ram=64, min_disk=1, tags=["b", "a", "a"],
                          **{"owner_specified.openstack.md5": "x", "hw_disk_bus": "virtio"})
    assert image["status"] == "queued" and image["visibility"] == "shared"
    assert image["owner"] == "demo" and image["tags"] == ["a", "b"]
    assert (image["size"], image["checksum"], image["os_hash_algo"]) == (None, None, None)
    assert image["hw_disk_bus"] == "virtio" and image["owner_specified.openstack.md5"] == "x"
    assert image["self"] == "/v2/images/%s" % image["id"]
    assert image["file"] == "/v2/images/%s/file" % image["id"]
    assert image["created_at"].endswith("Z") and image["schema"] == "/v2/schemas/image"
    assert member.get("%s/%s/file" % (IMAGES, image["id"])).status_code == 204  # no data yet

    data = qcow2(virtual_size=5 << 20)
    r = member.upload(image["id"], data)
    assert r.status_code == 204 and r.get_data() == b""
    shown = member.get("%s/%s" % (IMAGES, image["id"])).get_json()
    assert shown["status"] == "active" and shown["size"] == len(data)
    assert shown["virtual_size"] == 5 << 20
    assert shown["checksum"] == hashlib.md5(data).hexdigest()
    assert shown["os_hash_algo"] == "sha512"
    assert shown["os_hash_value"] == hashlib.sha512(data).hexdigest()
    got = member.get("%s/%s/file" % (IMAGES, image["id"]))
    assert got.status_code == 200 and got.get_data() == data
    assert got.headers["Content-MD5"] == hashlib.md5(data).hexdigest()
    assert got.headers["Content-Type"] == "application/octet-stream"
    # The compute hosts' view of it: /v1 with the sha256 they verify.
    v1 = member.get("/v1/images/%s" % image["id"]).get_json()["image"]
    assert v1["checksum"] == hashlib.sha256(data).hexdigest()
    assert member.get("/v1/images/%s/file" % image["id"]).get_data() == data
    assert oct(os.stat(os.path.join(imagestore.store_path(conf), image["id"])).st_mode
               & 0o777) == "0o640"


def test_create_answers_with_a_location_and_a_request_id(member):
    r = member.post(IMAGES, json={"name": "x"})
    assert r.status_code == 201
    assert r.headers["Location"] == "http://localhost/image/v2/images/%s" % r.get_json()["id"]
    assert r.headers["x-openstack-request-id"].startswith("req-")
    body = r.get_json()
    assert body["disk_format"] is None and body["container_format"] is None


def test_create_with_an_id_and_without_a_name(member):
    wanted = "5c5e5f0e-0a0b-4c4d-8e8f-000000000001"
    image = member.create(id=wanted)
    assert image["id"] == wanted and image["name"] is None
    error(member.post(IMAGES, json={"id": wanted}), 409, wanted)


def test_raw_images_of_random_bytes(member):
    image = member.create(name="raw", disk_format="raw")
    data = os.urandom(3000).replace(b"QFI\xfb", b"xxxx")
    assert member.upload(image["id"], data).status_code == 204
    shown = member.get("%s/%s" % (IMAGES, image["id"])).get_json()
    assert shown["status"] == "active" and shown["virtual_size"] == len(data)


def test_an_empty_raw_upload_is_an_active_image_without_bytes(member):
    image = member.create(name="empty", disk_format="raw")
    assert member.upload(image["id"], b"").status_code == 204
    shown = member.get("%s/%s" % (IMAGES, image["id"])).get_json()
    assert (shown["status"], shown["size"]) == ("active", 0)


@pytest.mark.parametrize("disk_format, data, words", [
    ("qcow2", b"not a qcow2 image" * 100, ["qcow2", "no qcow2 header"]),
    ("qcow2", qcow2(backing=True), ["backing file"]),
    ("qcow2", qcow2(version=7), ["version"]),
    ("raw", qcow2(), ["raw", "qcow2 image"]),
    ("raw", b"KDMV" + b"\0" * 600, ["vmdk"]),
])
def test_data_not_in_the_disk_format_is_400_and_the_image_stays_queued(
        member, conf, disk_format, data, words):
    image = member.create(name="bad", disk_format=disk_format)
    error(member.upload(image["id"], data), 400, *words)
    assert member.get("%s/%s" % (IMAGES, image["id"])).get_json()["status"] == "queued"
    assert os.listdir(imagestore.store_path(conf)) == []
    assert member.upload(image["id"], qcow2() if disk_format == "qcow2"
                         else b"raw bytes").status_code == 204


def test_upload_size_cap(member, conf):
    image = member.create(name="big")
    error(member.upload(image["id"], qcow2(length=64 * 1024 + 1)), 413, str(64 * 1024))
    assert member.get("%s/%s" % (IMAGES, image["id"])).get_json()["status"] == "queued"
    assert os.listdir(imagestore.store_path(conf)) == []


def test_upload_needs_a_queued_image_and_octet_stream(member):
    image = member.create(name="once")
    error(member.upload(image["id"], qcow2(), content_type="application/json"), 415,
          "application/octet-stream")
    assert member.upload(image["id"], qcow2()).status_code == 204
    error(member.upload(image["id"], qcow2()), 409, "active", "queued")
    unformatted = member.post(IMAGES, json={"name": "no format"}).get_json()
    error(member.upload(unformatted["id"], qcow2()), 400, "disk_format, container_format")


def test_an_upload_in_progress_blocks_another(member, db):
    image = member.create(name="busy")
    with db.transaction() as s:
        assert db_images.start_upload(s, image["id"])
    error(member.upload(image["id"], qcow2()), 409, "saving")


def test_an_image_deleted_during_its_upload_keeps_no_file(member, db, conf):
    image = member.create(name="gone")
    with db.transaction() as s:
        assert db_images.start_upload(s, image["id"])
        db_images.delete(s, db_images.get(s, _admin_ctxt(), image["id"]))
    with db.transaction() as s:
        assert not db_images.finish_upload(s, image["id"], {})


def _admin_ctxt():
    from common.context import RequestContext
    return RequestContext(project_id="admin", is_admin=True)


# -- visibility and ownership --------------------------------------------------

def test_who_sees_what(member, other, admin):
    private = member.create(name="mine-private", visibility="private")["id"]
    shared = member.create(name="mine-shared")["id"]
    community = member.create(name="mine-community", visibility="community")["id"]
    public = admin.create(name="public", visibility="public")["id"]
    theirs = other.create(name="theirs", visibility="private")["id"]

    def names(caller, query=""):
        return sorted(i["name"] for i in caller.get(IMAGES + query).get_json()["images"])
    assert names(member) == ["mine-community", "mine-private", "mine-shared", "public"]
    assert names(other) == ["public", "theirs"]
    assert names(other, "?visibility=community") == ["mine-community"]
    assert names(other, "?visibility=all") == ["mine-community", "public", "theirs"]
    assert names(other, "?visibility=private") == ["theirs"]
    assert len(names(admin)) == 5
    for image_id in (private, shared):
        error(other.get("%s/%s" % (IMAGES, image_id)), 404, image_id)
        error(other.get("%s/%s/file" % (IMAGES, image_id)), 404)
        error(other.delete("%s/%s" % (IMAGES, image_id)), 404)
    assert other.get("%s/%s" % (IMAGES, community)).status_code == 200
    assert admin.get("%s/%s" % (IMAGES, theirs)).status_code == 200
    # Seen but not owned: 403 to change, upload or delete.
    error(other.delete("%s/%s" % (IMAGES, public)), 403)
    error(other.upload(community, qcow2()), 403)
    error(other.patch("%s/%s" % (IMAGES, community), json=[],
                      content_type="application/openstack-images-v2.1-json-patch"), 403)


def test_only_admins_publicize_or_give_images_away(member, admin):
    error(member.post(IMAGES, json={"name": "p", "visibility": "public"}), 403, "admin")
    error(member.post(IMAGES, json={"name": "p", "owner": "other"}), 403)
    image = admin.create(name="given", owner="demo", visibility="private")
    assert image["owner"] == "demo"
    assert member.get("%s/%s" % (IMAGES, image["id"])).status_code == 200


def test_readers_read_only(member, reader):
    image = member.create(name="r")
    assert reader.get("%s/%s" % (IMAGES, image["id"])).status_code == 200
    error(reader.post(IMAGES, json={"name": "x"}), 403, "reader")
    error(reader.upload(image["id"], qcow2()), 403, "reader")
    error(reader.delete("%s/%s" % (IMAGES, image["id"])), 403, "reader")


def test_v1_sees_the_same_visibility(member, other):
    private = member.create(name="p1", visibility="private")["id"]
    assert [i["id"] for i in member.get("/v1/images").get_json()["images"]] == [private]
    assert other.get("/v1/images").get_json()["images"] == []
    error(other.get("/v1/images/%s" % private), 404)


# -- delete --------------------------------------------------------------------

def test_delete_removes_the_file(member, conf):
    image = member.create(name="doomed")
    assert member.upload(image["id"], qcow2()).status_code == 204
    path = os.path.join(imagestore.store_path(conf), image["id"])
    assert os.path.exists(path)
    r = member.delete("%s/%s" % (IMAGES, image["id"]))
    assert r.status_code == 204 and r.get_data() == b""
    assert not os.path.exists(path)
    error(member.get("%s/%s" % (IMAGES, image["id"])), 404)
    error(member.delete("%s/%s" % (IMAGES, image["id"])), 404)


def test_protected_images_are_not_deleted(member):
    image = member.create(name="keep", protected=True)
    error(member.delete("%s/%s" % (IMAGES, image["id"])), 403, "protected")


# -- bad input -----------------------------------------------------------------

@pytest.mark.parametrize("body, code, field", [
    ({"disk_format": "vmdk"}, 400, "disk_format"),
    ({"container_format": "ovf"}, 400, "container_format"),
    ({"visibility": "everyone"}, 400, "visibility"),
    ({"min_ram": -1}, 400, "min_ram"),
    ({"min_disk": "1"}, 400, "min_disk"),
    ({"min_ram": 2 ** 31}, 400, "min_ram"),
    ({"name": "x" * 256}, 400, "name"),
    ({"name": 5}, 400, "name"),
    ({"name": "a\x00b"}, 400, "name"),
    ({"protected": "yes"}, 400, "protected"),
    ({"tags": "a"}, 400, "tags"),
    ({"tags": ["x" * 256]}, 400, "tags.0"),
    ({"tags": [""]}, 400, "tags.0"),
    ({"id": "not-a-uuid"}, 400, "id"),
    ({"hw_disk_bus": 1}, 400, "hw_disk_bus"),
    ({"k" * 256: "v"}, 400, "k" * 10),
    ({"bad\nkey": "v"}, 400, "property name"),
    ({"status": "active"}, 403, "status"),
    ({"checksum": "x"}, 403, "checksum"),
    ({"size": 1}, 403, "size"),
    ({"locations": []}, 403, "locations"),
    ({"deleted": True}, 403, "deleted"),
    ({"os_glance_import_method": "x"}, 403, "os_glance"),
    ({"tags": ["t%d" % i for i in range(129)]}, 413, "tags"),
    (dict(("p%d" % i, "v") for i in range(129)), 413, "properties"),
])
def test_bad_create_bodies(member, body, code, field):
    error(member.post(IMAGES, json=body), code, field)


@pytest.mark.parametrize("kw, code", [
    ({"data": "{", "content_type": "application/json"}, 400),
    ({"json": []}, 400),
    ({"data": "{}", "content_type": "text/plain"}, 415),
])
def test_bad_create_requests(member, kw, code):
    error(member.post(IMAGES, **kw), code)


def test_names_are_path_segments_not_ids(member):
    member.create(name="cirros")
    error(member.get(IMAGES + "/cirros"), 404, "cirros")
    error(member.get(IMAGES + "/" + "x" * 5000), 404)


def test_compute_hosts_service_users_download_every_image(app, db, member):
    image = member.create(name="private", visibility="private")
    assert member.upload(image["id"], qcow2()).status_code == 204
    path = "/v1/images/%s/file" % image["id"]
    service = Caller(app.test_client(), auth_headers(db, "service"))
    assert service.get(path).get_data() == qcow2()
    error(service.get("/v1/images/%s" % image["id"]), 404)        # the data only
    error(service.get("%s/%s/file" % (IMAGES, image["id"])), 404)  # and through /v1 only
    reader = Caller(app.test_client(), auth_headers(db, "service", "reader"))
    error(reader.get(path), 404)
    error(Caller(app.test_client(), auth_headers(db, "other")).get(path), 404)
