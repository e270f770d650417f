"""A compute host's upload of a snapshot to the API's image store, over
loopback HTTP (the real app; the host's service token): the data lands
summed and the image active; the service user may write and discard only
snapshot images not active yet; data that does not match its Content-MD5
never becomes an active image."""
import base64
import hashlib
import os
import threading
import urllib.error
import urllib.request
import uuid

import pytest
from werkzeug.serving import make_server

from common import exception
from common.db import images as db_images
from nova_api.app import create_app
from nova_compute.image_upload import ImageUploader
from tests.unit.conftest import token_for

OWNER = "tenant-a"


def _qcow2():
    """A real, empty qcow2 header (what the store's format check reads)."""
    header = bytearray(512)
    header[0:4] = b"QFI\xfb"
    header[4:8] = (3).to_bytes(4, "big")          # version
    header[20:24] = (16).to_bytes(4, "big")       # cluster_bits
    header[24:32] = (1 << 20).to_bytes(8, "big")  # virtual size
    header[100:104] = (104).to_bytes(4, "big")    # header_length (v3)
    return bytes(header) + bytes(range(256)) * 64


QCOW2 = _qcow2()


@pytest.fixture
def served(conf, db, image, recorder):
    app = create_app(conf, db, recorder(), recorder())
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield "http://127.0.0.1:%d" % server.server_port
    finally:
        server.shutdown()
        thread.join(5)


@pytest.fixture
def service_uploader(served, db, conf):
    return ImageUploader(served, token_for(db, conf.api.service_project), timeout=10)


def queued_image(db, properties=None):
    with db.transaction() as s:
        image = db_images.create(s, {
            "id": str(uuid.uuid4()), "name": "snap", "disk_format": "qcow2",
            "container_format": "bare", "visibility": "private", "owner": OWNER,
            "status": "queued"},
            {"instance_uuid": "vm-1", "image_type": "snapshot"} if properties is None
            else properties, ())
        return image.id


def image(db, image_id):
    with db.transaction() as s:
        return s.get(db_images.Image, image_id)


@pytest.fixture
def disk(tmp_path):
    path = tmp_path / "snap.qcow2"
    path.write_bytes(QCOW2)
    return str(path)


def test_the_service_user_uploads_a_snapshot_of_another_project(db, service_uploader,
                                                                 disk):
    image_id = queued_image(db)
    stored = service_uploader.upload(image_id, disk)
    row = image(db, image_id)
    assert row.status == "active" and row.size == len(QCOW2)
    assert stored["md5"] == row.md5 == hashlib.md5(QCOW2).hexdigest()
    assert stored["sha256"] == row.checksum == hashlib.sha256(QCOW2).hexdigest()
    with open(row.location, "rb") as f:
        assert f.read() == QCOW2
    # Active: no longer the service user's to delete (nor to see: a 404).
    service_uploader.discard(image_id)
    assert image(db, image_id).deleted_at is None


def test_a_failed_snapshot_is_discarded_with_nothing_left(db, service_uploader):
    image_id = queued_image(db)
    assert service_uploader.discard(image_id) is True
    assert image(db, image_id).deleted_at is not None
    assert service_uploader.discard(image_id) is True  # gone already: fine


def test_the_service_user_may_not_write_other_images(db, service_uploader, disk):
    image_id = queued_image(db, properties={})
    with pytest.raises(exception.ImageNotFound):
        service_uploader.upload(image_id, disk)
    service_uploader.discard(image_id)
    assert image(db, image_id).status == "queued" and image(db, image_id).deleted_at is None


def test_data_not_matching_its_content_md5_never_becomes_active(served, db, conf, disk):
    image_id = queued_image(db)
    request = urllib.request.Request(
        served + "/image/v2/images/%s/file" % image_id, data=QCOW2, method="PUT",
        headers={"X-Auth-Token": token_for(db, conf.api.service_project),
                 "Content-Type": "application/octet-stream",
                 "Content-MD5": base64.b64encode(hashlib.md5(b"other").digest()).decode()})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(request, timeout=10)
    assert e.value.code == 400 and b"Content-MD5" in e.value.read()
    row = image(db, image_id)
    assert (row.status, row.location) == ("queued", None)
    assert not [n for n in os.listdir(os.path.join(conf.state_path, "images"))
                if n.startswith(image_id)]


def test_an_unreachable_store_is_image_unavailable(disk):
    uploader = ImageUploader("http://127.0.0.1:9", "t", timeout=2)
    with pytest.raises(exception.ImageUnavailable):
        uploader.upload("x", disk)
    assert uploader.discard("x") is False


def test_others_cannot_use_the_service_rights(db, served, disk):
    image_id = queued_image(db)
    other = ImageUploader(served, token_for(db, "someone-else"), timeout=10)
    with pytest.raises(exception.ImageNotFound):
        other.upload(image_id, disk)
    other.discard(image_id)
    assert image(db, image_id).deleted_at is None


def test_the_service_user_deletes_active_backups_not_active_snapshots(db, service_uploader):
    backup = queued_image(db, properties={"instance_uuid": "vm-1", "image_type": "backup",
                                          "backup_type": "daily"})
    snapshot = queued_image(db)
    with db.transaction() as s:
        for image_id in (backup, snapshot):
            s.get(db_images.Image, image_id).status = "active"
    assert service_uploader.discard(backup) is True
    assert image(db, backup).deleted_at is not None
    service_uploader.discard(snapshot)
    assert image(db, snapshot).deleted_at is None
