"""The API's flavor and image lookups (nova_api.lookups): flavors and images
kept for a TTL; what a deleted or a new image does within it; private
flavors found only by admins and the projects they are shared with."""
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


def test_private_flavors_are_found_by_admins_and_shared_projects(db):
    from common.db import auth
    from common.db import flavors as db_flavors
    with db.transaction() as s:
        auth.project_create(s, "p1", project_id="p1")
        db_flavors.create(s, "m9.private", 1, 64, 1, flavor_id="f-private", is_public=False)
        db_flavors.create(s, "m9.public", 1, 64, 1, flavor_id="f-public")
    lookups = Lookups(db)
    assert lookups.flavor("m9.public", "p1").id == "f-public"
    assert lookups.flavor("f-private", "p1", is_admin=True).name == "m9.private"
    with pytest.raises(exception.FlavorNotFound):
        lookups.flavor("m9.private", "p1")
    with db.transaction() as s:
        db_flavors.access_add(s, "f-private", "p1")
    assert lookups.flavor("m9.private", "p1").id == "f-private"   # no reload needed
    with pytest.raises(exception.FlavorNotFound):
        lookups.flavor("m9.private", "p2")
