"""POST /compute/v2.1/servers as tempest and OSC send it: the 202 body
exactly (tempest's create_server_with_admin_pass schema), what the VM is
stored with, and §3.3.3's validation table (400, 403, 409)."""
import pytest
from tempest.lib.api_schema.response.compute.v2_1 import servers as schemas

from common.db import api as db_api
from nova_api.openstack.compute import server_requests
from tests.unit.compute_surface import admin, app, fault, member, other, reader  # noqa: F401
from tests.unit.test_compute_tempest_schemas import check

BASE = "http://localhost"
NETWORK_ID = server_requests.network_uuid("mininova")


def server(image, **fields):
    return {"server": dict({"name": "vm1", "imageRef": image, "flavorRef": "1"}, **fields)}


def create(caller, body):
    r = caller.post("/servers", body)
    if r.status_code == 202:
        return check(schemas.create_server_with_admin_pass, r)["server"], r
    return None, r


def test_tempests_create(member, image, app):
    body, r = create(member, server(image, adminPass="s3cret!"))
    assert set(body) == {"id", "links", "OS-DCF:diskConfig", "security_groups", "adminPass"}
    assert (body["adminPass"], body["OS-DCF:diskConfig"], body["security_groups"]) == (
        "s3cret!", "MANUAL", [{"name": "default"}])
    assert r.headers["Location"] == BASE + "/compute/v2.1/servers/" + body["id"]
    assert body["links"][0]["href"] == r.headers["Location"]
    assert r.headers["x-compute-request-id"] == r.headers["x-openstack-request-id"]
    actions = member.client.get("/v1/vms/%s/actions" % body["id"],
                                headers={"X-Auth-Token": member.token}).get_json()
    assert [(a["action"], a["request_id"]) for a in actions["actions"]] == [
        ("create", r.headers["x-compute-request-id"])]
    shown = check(schemas.get_server, member.get("/servers/" + body["id"]))["server"]
    assert (shown["name"], shown["status"], shown["image"]["id"], shown["flavor"]["id"]) == (
        "vm1", "BUILD", image, "1")
    builds = app.extensions["mininova"]["vm_service"].build_client
    assert [(m, a) for m, a, _ in builds.calls] == [("build_instances", (body["id"],))]


def test_a_random_admin_password_when_none_is_given(member, image):
    first, _ = create(member, server(image, name="a"))
    second, _ = create(member, server(image, name="b"))
    assert len(first["adminPass"]) == 12 and first["adminPass"] != second["adminPass"]


def test_oscs_create(member, image, db):
    """What OSC 10.5 sends at 2.1 (observed), with a group hint in its spelling."""
    group = member.post("/os-server-groups", {"server_group": {
        "name": "g", "policies": ["anti-affinity"]}}).get_json()["server_group"]["id"]
    body = {"server": {"name": "vm1", "imageRef": image, "flavorRef": "1", "min_count": 1,
                       "max_count": 1, "networks": [],
                       "block_device_mapping_v2": [{
                           "uuid": image, "boot_index": 0, "source_type": "image",
                           "destination_type": "local", "delete_on_termination": True}]},
            "OS-SCH-HNT:scheduler_hints": {"group": group}}
    created, _ = create(member, body)
    with db.transaction() as s:
        assert db_api.instance_get(s, created["id"]).group_id == group


def test_tempests_group_hint_and_the_one_network(member, image, db):
    group = member.post("/os-server-groups", {"server_group": {
        "name": "g", "policies": ["affinity"]}}).get_json()["server_group"]["id"]
    body = server(image, networks=[{"uuid": NETWORK_ID}], min_count="1",
                  security_groups=[{"name": "default"}], availability_zone="nova",
                  config_drive=True, flavorRef=BASE + "/compute/flavors/1")
    body["os:scheduler_hints"] = {"group": group}
    created, _ = create(member, body)
    with db.transaction() as s:
        assert db_api.instance_get(s, created["id"]).group_id == group


def test_the_nova_fields_are_stored_and_shown(member, image):
    key = member.post("/os-keypairs", {"keypair": {"name": "kp"}})
    assert key.status_code == 200
    created, _ = create(member, server(
        image, name="Ünïcode name", metadata={"role": "web", "a b:c.d-e_f": ""},
        key_name="kp", accessIPv4="192.0.2.7", accessIPv6="0:0:0:0:0:0:babe:dc0c",
        user_data="IyEvYmluL3NoCmVjaG8gaGk=", **{"OS-DCF:diskConfig": "AUTO"}))
    assert created["OS-DCF:diskConfig"] == "AUTO"
    shown = check(schemas.get_server, member.get("/servers/" + created["id"]))["server"]
    assert {k: shown[k] for k in ("name", "metadata", "key_name", "accessIPv4",
                                  "accessIPv6", "OS-DCF:diskConfig")} == {
        "name": "Ünïcode name", "metadata": {"role": "web", "a b:c.d-e_f": ""},
        "key_name": "kp", "accessIPv4": "192.0.2.7", "accessIPv6": "::babe:dc0c",
        "OS-DCF:diskConfig": "AUTO"}


BAD_FIELDS = [
    ("name", 12345), ("name", ""), ("name", "   "), ("name", " vm"), ("name", "vm "),
    ("name", "x" * 256), ("name", "a\nb"),
    ("flavorRef", "no-such-flavor"), ("flavorRef", ""),
    ("imageRef", "not-a-uuid"), ("imageRef", "00000000-0000-0000-0000-000000000000"),
    ("imageRef", ""),
    ("accessIPv4", "1.1.1.1.1"), ("accessIPv4", "::1"), ("accessIPv6", "2.2.2.2"),
    ("accessIPv6", "1:1:1:1:1:1:1:1:1"),
    ("networks", [{"uuid": "a-b-c-d-e-f-g-h-i-j"}]),
    ("networks", [{"uuid": "00000000-0000-0000-0000-000000000000"}]),
    ("networks", [{"port": "00000000-0000-0000-0000-000000000000"}]),
    ("networks", "auto"),
    ("security_groups", [{"name": "no-such-group"}]),
    ("key_name", "no-such-keypair"),
    ("metadata", {"bad/key": "v"}), ("metadata", {"k": "v" * 256}), ("metadata", {"": "v"}),
    ("metadata", {"k": 1}), ("metadata", []),
    ("min_count", 0), ("max_count", "x"), ("max_count", 101), ("min_count", "101"),
    ("availability_zone", "elsewhere"),
    ("OS-DCF:diskConfig", "SOMETIMES"),
    ("user_data", "not base64!"),
    ("personality", [{"path": "/etc/motd", "contents": ""}]), ("return_reservation_id", True),
    ("block_device_mapping_v2", [{"source_type": "volume", "destination_type": "volume",
                                  "uuid": "00000000-0000-0000-0000-000000000000",
                                  "boot_index": 0}]),
    ("block_device_mapping_v2", [{"source_type": "image", "destination_type": "local",
                                  "uuid": "00000000-0000-0000-0000-000000000000",
                                  "boot_index": 0}]),
    ("block_device_mapping_v2", []),
]


@pytest.mark.parametrize("field,value", BAD_FIELDS)
def test_validation_is_a_400_naming_the_field(member, image, field, value, db):
    message = fault(member.post("/servers", server(image, **{field: value})), 400)
    assert field.split(":")[0].split("_")[0].lower() in message.lower() or field in (
        "flavorRef", "imageRef", "key_name"), message
    with db.transaction() as s:
        assert db_api.instance_list(s) == []


@pytest.mark.parametrize("body", [
    {}, {"server": {}}, {"server": None}, [], {"server": {"name": "vm1", "flavorRef": "1"}},
    {"server": {"name": "vm1", "imageRef": "x"}},
    {"server": {"name": "vm1", "flavorRef": "1"}, "unknown": 1},
    {"server": {"name": "vm1", "flavorRef": "1"}, "os:scheduler_hints": {"group": "x"}},
])
def test_malformed_bodies(member, body):
    fault(member.post("/servers", body), 400)


def test_an_unknown_group_is_a_400(member, image):
    body = server(image)
    body["os:scheduler_hints"] = {"group": "00000000-0000-0000-0000-000000000000"}
    assert "group" in fault(member.post("/servers", body), 400).lower()


def test_image_too_big_for_the_flavor_and_an_inactive_image(member, image, db):
    with db.transaction() as s:
        big = db_api.image_create(s, name="big", min_ram=4096, min_disk=0, disk_format="qcow2",
                                  status="active").id
        queued = db_api.image_create(s, name="queued", min_ram=0, min_disk=0,
                                     disk_format="qcow2", status="queued").id
    assert "RAM" in fault(member.post("/servers", server(big)), 400)
    fault(member.post("/servers", server(queued)), 400)


def test_too_much_metadata_and_quota_are_403(member, admin, image):
    many = {"k%d" % i: "v" for i in range(129)}
    assert "metadata" in fault(member.post("/servers", server(image, metadata=many)), 403)
    assert admin.put("/os-quota-sets/p1", {"quota_set": {"instances": 1}}).status_code == 200
    create(member, server(image, name="one"))
    assert "instances" in fault(member.post("/servers", server(image, name="two")), 403)


def test_a_duplicate_name_in_the_project_is_a_409(member, other, image):
    create(member, server(image))
    fault(member.post("/servers", server(image)), 409)
    assert other.post("/servers", server(image)).status_code == 202


def test_a_reader_may_not_create(reader, image):
    fault(reader.post("/servers", server(image)), 403)


def test_min_count_creates_servers_named_as_nova_does(member, image):
    """tempest's ListServersNegativeTestJSON creates its servers with min_count 3."""
    created, _ = create(member, server(image, min_count=3))
    listed = member.get("/servers?name=^vm1-").get_json()["servers"]
    assert sorted(s["name"] for s in listed) == ["vm1-1", "vm1-2", "vm1-3"]
    assert created["id"] == [s["id"] for s in listed if s["name"] == "vm1-1"][0]


def test_max_count_stops_at_the_quota_min_count_does_not(member, admin, image, db):
    assert admin.put("/os-quota-sets/p1", {"quota_set": {"instances": 3}}).status_code == 200
    assert "instances" in fault(member.post("/servers", server(image, min_count=4)), 403)
    with db.transaction() as s:
        assert db_api.instance_list(s) == []
    create(member, server(image, min_count=2, max_count=5))
    names = sorted(s["name"] for s in member.get("/servers").get_json()["servers"])
    assert names == ["vm1-1", "vm1-2", "vm1-3"]


def test_min_count_over_max_count(member, image):
    assert "max_count" in fault(member.post("/servers", server(image, min_count=3,
                                                               max_count=2)), 400)


def test_a_name_too_long_for_the_numbered_names_is_a_400(member, image, db):
    create(member, server(image, name="x" * 255))
    assert "name" in fault(member.post("/servers", server(image, name="y" * 254,
                                                          min_count=2)), 400)
    with db.transaction() as s:
        assert len(db_api.instance_list(s)) == 1
