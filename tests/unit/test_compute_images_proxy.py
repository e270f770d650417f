"""Nova's deprecated images proxy at 2.1 (/compute/v2.1/images): list,
detail, show and delete over the images the caller may see, in tempest 47's
v2_1 images schemas; a snapshot shows SAVING then its server."""
import uuid

import pytest
from tempest.lib.api_schema.response.compute.v2_1 import images as schemas

from common.db import images as db_images
from nova_api.app import create_app
from tests.conftest import Recorder
from tests.unit.compute_surface import admin, fault, member, other  # noqa: F401
from tests.unit.conftest import register_blank_image
from tests.unit.test_compute_tempest_schemas import check


@pytest.fixture
def app(conf, db):
    return create_app(conf, db, Recorder(), Recorder())


@pytest.fixture
def public(conf, db, tmp_path):
    return register_blank_image(conf, db, tmp_path)


def snapshot(db, status="queued", image_type="snapshot", owner="p1", name="snap"):
    with db.transaction() as s:
        return db_images.create(s, {"id": str(uuid.uuid4()), "name": name, "owner": owner,
                                    "visibility": "private", "status": status, "min_disk": 1},
                                {"instance_uuid": "srv-1", "image_type": image_type}, ()).id


def test_list_detail_and_show_in_novas_shapes(db, member, public):
    snap = snapshot(db)
    listed = check(schemas.list_images, member.get("/images"))["images"]
    assert {i["id"] for i in listed} == {public, snap}
    detail = {i["id"]: i for i in check(schemas.list_images_details,
                                        member.get("/images/detail"))["images"]}
    assert (detail[snap]["status"], detail[snap]["progress"]) == ("SAVING", 25)
    assert detail[snap]["server"]["id"] == "srv-1"
    assert detail[snap]["metadata"] == {"instance_uuid": "srv-1", "image_type": "snapshot"}
    assert (detail[public]["status"], detail[public]["progress"]) == ("ACTIVE", 100)
    assert "server" not in detail[public]
    shown = check(schemas.get_image, member.get("/images/%s" % snap))["image"]
    assert shown == detail[snap]
    assert {l["rel"] for l in shown["links"]} == {"self", "bookmark", "alternate"}


def test_filters(db, member, public):
    snap = snapshot(db, status="active")
    backup = snapshot(db, status="active", image_type="backup", name="b")
    ids = lambda q: {i["id"] for i in member.get("/images" + q).get_json()["images"]}  # noqa
    assert ids("?server=srv-1") == {snap, backup}
    assert ids("?type=backup") == {backup}
    assert ids("?name=blank") == {public}
    assert ids("?status=SAVING") == set()
    assert ids("?minDisk=1") == {snap, backup}
    assert len(ids("?limit=1")) == 1
    fault(member.get("/images?type=other"), 400)
    fault(member.get("/images?marker=nope"), 400)


def test_others_images_are_404_and_delete_is_the_owners(db, member, other, public):
    snap = snapshot(db, status="active")
    fault(other.get("/images/%s" % snap), 404)
    fault(other.delete("/images/%s" % snap), 404)
    fault(member.delete("/images/%s" % public), 403)  # public, not theirs
    assert member.delete("/images/%s" % snap).status_code == 204
    fault(member.get("/images/%s" % snap), 404)
    fault(member.delete("/images/%s" % snap), 404)


def test_changes_since(db, member, public):
    snap = snapshot(db, status="active")
    ids = lambda q: {i["id"] for i in member.get("/images" + q).get_json()["images"]}  # noqa
    assert ids("?changes-since=2000-01-01T00:00:00Z") == {public, snap}
    assert ids("?changes-since=2999-01-01T00:00:00Z") == set()
    fault(member.get("/images?changes-since=yesterday"), 400)
