"""The Glance v2 subset's list (filters, sorting, paging and its links),
JSON-patch updates and tags, and what /v1 VM creation makes of images that
Glance created."""
import pytest

from nova_api.app import create_app
from tests.unit.conftest import auth_headers
from tests.unit.test_image_api import IMAGES, Caller, error, qcow2

PATCH = "application/openstack-images-v2.1-json-patch"


@pytest.fixture
def app(conf, db, recorder):
    return create_app(conf, db, recorder(), recorder())


@pytest.fixture
def member(app, db):
    return Caller(app.test_client(), auth_headers(db, "demo"))


@pytest.fixture
def other(app, db):
    return Caller(app.test_client(), auth_headers(db, "other"))


def names(caller, query=""):
    r = caller.get(IMAGES + query)
    assert r.status_code == 200, r.get_data(as_text=True)
    return [i["name"] for i in r.get_json()["images"]]


def patch(caller, image_id, *changes, content_type=PATCH):
    return caller.patch("%s/%s" % (IMAGES, image_id), json=list(changes),
                        content_type=content_type)


# -- list ----------------------------------------------------------------------

@pytest.fixture
def five(member):
    """Images a..e, created in that order; b and d raw, d active and tagged."""
    ids = {}
    for name in "abcde":
        ids[name] = member.create(name=name, disk_format="raw" if name in "bd" else "qcow2",
                                  min_ram=ord(name), tags=["t"] if name == "d" else [],
                                  **({"color": "red"} if name in "ab" else {}))["id"]
    assert member.upload(ids["d"], b"raw data").status_code == 204
    return ids


def test_list_shape_and_default_order(member, five):
    body = member.get(IMAGES).get_json()
    assert [i["name"] for i in body["images"]] == list("edcba")  # newest first
    assert body["first"] == "/v2/images" and body["schema"] == "/v2/schemas/images"
    assert "next" not in body


@pytest.mark.parametrize("query, expected", [
    ("?name=c", "c"), ("?name=in:a,e", "ea"), ("?status=active", "d"),
    ("?status=queued&disk_format=raw", "b"), ("?disk_format=in:raw", "db"),
    ("?container_format=bare&min_ram=0", ""), ("?tag=t", "d"), ("?tag=t&tag=u", ""),
    ("?color=red", "ba"), ("?owner=demo&visibility=shared", "edcba"), ("?owner=x", ""),
    ("?id=in:%s", "b"), ("?size_min=1", "d"), ("?size_max=3", ""), ("?protected=false", "edcba"),
    ("?sort_key=name&sort_dir=asc", "abcde"), ("?sort=min_ram:asc", "abcde"),
    ("?sort=disk_format:desc,name:asc", "bdace"), ("?member_status=all", "edcba"),
])
def test_filters_and_sorting(member, five, query, expected):
    assert "".join(names(member, query.replace("%s", five["b"]))) == expected


def test_hidden_images_only_when_asked(member):
    member.create(name="hidden", os_hidden=True)
    assert names(member) == []
    assert names(member, "?os_hidden=true") == ["hidden"]


def test_paging_with_next_links(member, five):
    body = member.get(IMAGES + "?limit=2&sort_key=name&sort_dir=asc").get_json()
    assert [i["name"] for i in body["images"]] == ["a", "b"]
    assert body["next"].startswith("/v2/images?")
    seen = ["a", "b"]
    while "next" in body:
        body = member.get("/image" + body["next"]).get_json()
        seen += [i["name"] for i in body["images"]]
    assert seen == list("abcde")
    assert "sort_key=name" in member.get(IMAGES + "?limit=1&sort_key=name").get_json()["next"]
    assert names(member, "?limit=0") == []


@pytest.mark.parametrize("query, field", [
    ("?limit=-1", "limit"), ("?limit=x", "limit"), ("?marker=nope", "marker"),
    ("?sort_key=checksum", "sort_key"), ("?sort_dir=up", "sort_dir"),
    ("?sort=name:up", "sort_dir"), ("?sort=name&sort_key=id", "sort"),
    ("?visibility=everyone", "visibility"), ("?member_status=maybe", "member_status"),
    ("?status=flying", "status"), ("?protected=yes", "protected"), ("?size_min=-5", "size_min"),
    ("?name=in:a,,b", "name"), ("?color=a%00b", "color"),
])
def test_bad_list_queries(member, five, query, field):
    error(member.get(IMAGES + query), 400, field)


def test_another_projects_image_is_no_marker(member, other):
    theirs = other.create(name="theirs", visibility="private")["id"]
    error(member.get(IMAGES + "?marker=" + theirs), 400, "marker")


# -- PATCH ---------------------------------------------------------------------

def test_patch_replace_add_remove(member):
    image = member.create(name="old", tags=["x"], color="red")
    r = patch(member, image["id"],
              {"op": "replace", "path": "/name", "value": "new"},
              {"op": "replace", "path": "/min_ram", "value": 128},
              {"op": "add", "path": "/min_disk", "value": 2},
              {"op": "replace", "path": "/visibility", "value": "private"},
              {"op": "replace", "path": "/tags", "value": ["y", "z"]},
              {"op": "add", "path": "/hw_disk_bus", "value": "virtio"},
              {"op": "replace", "path": "/color", "value": "blue"},
              {"op": "add", "path": "/a~1b", "value": "slash"})
    assert r.status_code == 200, r.get_data(as_text=True)
    body = r.get_json()
    assert (body["name"], body["min_ram"], body["min_disk"]) == ("new", 128, 2)
    assert body["visibility"] == "private" and body["tags"] == ["y", "z"]
    assert (body["hw_disk_bus"], body["color"], body["a/b"]) == ("virtio", "blue", "slash")
    assert body["updated_at"] >= body["created_at"]
    r = patch(member, image["id"], {"op": "remove", "path": "/color"})
    assert r.status_code == 200 and "color" not in r.get_json()
    assert member.get("%s/%s" % (IMAGES, image["id"])).get_json()["name"] == "new"


@pytest.mark.parametrize("changes, code, words", [
    ([{"op": "remove", "path": "/color"}], 409, ["color"]),
    ([{"op": "replace", "path": "/color", "value": "x"}], 409, ["color"]),
    ([{"op": "replace", "path": "/status", "value": "active"}], 403, ["status"]),
    ([{"op": "replace", "path": "/id", "value": "x"}], 403, ["id"]),
    ([{"op": "remove", "path": "/name"}], 403, ["name"]),
    ([{"op": "add", "path": "/os_glance_x", "value": "x"}], 403, ["os_glance"]),
    ([{"op": "replace", "path": "/visibility", "value": "public"}], 403, ["admin"]),
    ([{"op": "replace", "path": "/owner", "value": "other"}], 403, ["admin"]),
    ([{"op": "replace", "path": "/min_ram", "value": "1"}], 400, ["min_ram"]),
    ([{"op": "replace", "path": "/name"}], 400, ["value"]),
    ([{"op": "move", "path": "/name", "from": "/x"}], 400, ["op"]),
    ([{"op": "replace", "path": "name", "value": "x"}], 400, ["path"]),
    ([{"op": "replace", "path": "/tags/0", "value": "x"}], 400, ["nested"]),
    ([{"op": "add", "path": "/p", "value": 1}], 400, ["p"]),
    ({"op": "add"}, 400, ["(body)"]),
])
def test_bad_patches(member, changes, code, words):
    image = member.create(name="target")
    r = member.patch("%s/%s" % (IMAGES, image["id"]), json=changes, content_type=PATCH)
    error(r, code, *words)
    assert member.get("%s/%s" % (IMAGES, image["id"])).get_json()["name"] == "target"


def test_patch_needs_the_json_patch_media_type(member):
    image = member.create(name="m")
    error(patch(member, image["id"], content_type="application/json"), 415, PATCH)
    assert patch(member, image["id"], content_type="application/openstack-images-v2.0-json-"
                 "patch").status_code == 200


def test_formats_change_only_while_queued(member):
    image = member.create(name="f")
    assert member.upload(image["id"], qcow2()).status_code == 204
    error(patch(member, image["id"], {"op": "replace", "path": "/disk_format",
                                      "value": "raw"}), 403, "queued")


# -- tags ----------------------------------------------------------------------

def test_add_and_remove_a_tag(member):
    image = member.create(name="tagged")
    path = "%s/%s/tags/" % (IMAGES, image["id"])
    assert member.put(path + "one").status_code == 204
    assert member.put(path + "one").status_code == 204
    assert member.get("%s/%s" % (IMAGES, image["id"])).get_json()["tags"] == ["one"]
    assert member.delete(path + "one").status_code == 204
    error(member.delete(path + "one"), 404, "one")


# -- VMs from Glance's images (/v1) --------------------------------------------

def test_vms_boot_only_from_active_images_they_may_see(member, other):
    image = member.create(name="img", visibility="private")
    vm = {"name": "vm1", "image": image["id"], "flavor": "m1.tiny"}
    error(member.post("/v1/vms", json=vm), 400, "queued")
    assert member.upload(image["id"], qcow2()).status_code == 204
    error(other.post("/v1/vms", json=vm), 404, image["id"])
    r = member.post("/v1/vms", json=vm)
    assert r.status_code == 202, r.get_data(as_text=True)


def test_names_repeat_and_v1_lookups_by_an_ambiguous_name_are_409(member, other):
    first = member.create(name="twin")["id"]
    second = member.create(name="twin")["id"]
    for image_id in (first, second):
        assert member.upload(image_id, qcow2()).status_code == 204
    assert names(member, "?name=twin") == ["twin", "twin"]
    message = error(member.get("/v1/images/twin"), 409, first, second)
    assert "use an id" in message
    vm = {"name": "vm-twin", "image": "twin", "flavor": "m1.tiny"}
    error(member.post("/v1/vms", json=vm), 409, first, second)
    # Another project sees neither: the name is unknown there, not ambiguous.
    error(other.get("/v1/images/twin"), 404)
    assert member.get("/v1/images/" + first).get_json()["image"]["id"] == first
