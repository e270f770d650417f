"""The API's flavor and image lookups (nova_api.lookups): flavors kept for
good, images for a TTL; what a deleted or a new image does within it."""
import pytest
import sqlalchemy as sa

from common import exception
from common.db import api as db_api
from common.db.models import Image, utcnow
from nova_api.lookups import Lookups


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def lookups(db, image):
    return Lookups(db, image_ttl=5.0, clock=Clock())


def test_flavors_by_id_or_name_and_new_ones_found_at_once(lookups, db):
    assert lookups.flavor("m1.tiny") == lookups.flavor("1")
    assert lookups.flavor("1").memory_mb == 128
    with pytest.raises(exception.FlavorNotFound):
        lookups.flavor("m9.new")
    with db.transaction() as s:
        db_api.flavor_create(s, "m9.new", 1, 64, 1, flavor_id="f-new")
    assert lookups.flavor("m9.new").id == "f-new"
    assert lookups.flavor_names(("f-new",))["f-new"] == "m9.new"


def test_a_deleted_image_is_refused_within_the_ttl(lookups, db, image):
    assert lookups.image("blank").id == image
    assert lookups.image(image).name == "blank"
    with db.transaction() as s:
        s.execute(sa.update(Image).where(Image.id == image).values(deleted_at=utcnow()))
    assert lookups.image("blank").id == image      # still cached ...
    lookups.clock.now += 5.0                       # ... for the TTL at most
    for ref in ("blank", image):
        with pytest.raises(exception.ImageNotFound):
            lookups.image(ref)


def test_image_names_show_deleted_images_without_a_name(lookups, db, image):
    assert lookups.image_names((image,))[image] == "blank"
    with db.transaction() as s:
        s.execute(sa.update(Image).where(Image.id == image).values(deleted_at=utcnow()))
    assert lookups.image_names((image,))[image] == "blank"
    lookups.clock.now += 5.0
    assert lookups.image_names((image,))[image] is None


def test_an_unknown_id_reloads_the_names_at_most_once_a_second(lookups, db, conf, image):
    lookups.image_names()
    with db.transaction() as s:
        db_api.image_create(s, id="new-image", name="new", size=1, checksum="0" * 64,
                            location="/nowhere", disk_format="qcow2", status="active")
    assert "new-image" not in lookups.image_names(("new-image",))   # loaded just now
    lookups.clock.now += 1.0
    assert lookups.image_names(("new-image",))["new-image"] == "new"
