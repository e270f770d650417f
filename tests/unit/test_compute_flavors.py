"""Flavors on the compute surface at 2.1: exactly tempest's shapes, Nova's
filters, sorting and paging, private flavors and their access lists, extra
specs, and an admin's create and delete (codes 200 and 202)."""
import pytest

from common.db import flavors as db_flavors
from tests.unit.compute_surface import (  # noqa: F401  (fixtures)
    BASE, ROOT, admin, app, fault, member, other, reader)

DETAIL_KEYS = {"id", "name", "ram", "vcpus", "disk", "swap", "OS-FLV-EXT-DATA:ephemeral",
               "OS-FLV-DISABLED:disabled", "os-flavor-access:is_public", "rxtx_factor", "links"}


PUBLIC = ["1", "2", "3", "4", "5"]   # seeded by the first migration


@pytest.fixture
def flavors(db):
    with db.transaction() as s:
        db_flavors.create(s, "swappy", 1, 1024, 10, flavor_id="6", swap_mb=512, ephemeral_gb=10)
        db_flavors.create(s, "secret", 2, 1024, 10, flavor_id="9", is_public=False)


def create(caller, **flavor):
    body = {"name": "f1", "ram": 256, "vcpus": 1, "disk": 1}
    body.update(flavor)
    return caller.post("/flavors", {"flavor": body})


def test_list_and_detail_shapes(member, flavors):
    r = member.get("/flavors")
    assert r.status_code == 200
    items = r.get_json()["flavors"]
    assert [f["id"] for f in items] == PUBLIC + ["6"]
    assert items[0] == {"id": "1", "name": "m1.tiny", "links": [
        {"rel": "self", "href": BASE + ROOT + "/flavors/1"},
        {"rel": "bookmark", "href": BASE + "/compute/flavors/1"}]}
    detail = member.get("/flavors/detail").get_json()["flavors"]
    assert all(set(f) == DETAIL_KEYS for f in detail)
    tiny, swappy = detail[0], detail[-1]
    assert tiny["swap"] == "" and swappy["swap"] == 512
    assert swappy["OS-FLV-EXT-DATA:ephemeral"] == 10 and tiny["OS-FLV-EXT-DATA:ephemeral"] == 0
    assert tiny["ram"] == 128 and tiny["disk"] == 1 and tiny["rxtx_factor"] == 1.0
    assert tiny["os-flavor-access:is_public"] is True and tiny["OS-FLV-DISABLED:disabled"] is False
    for f in detail:
        assert member.get("/flavors/%s" % f["id"]).get_json() == {"flavor": f}
    assert "flavors_links" not in r.get_json()


def test_filters(member, flavors):
    def ids(query):
        r = member.get("/flavors/detail?" + query)
        assert r.status_code == 200, r.get_data(as_text=True)
        return [f["id"] for f in r.get_json()["flavors"]]
    assert ids("minRam=1024") == ["2", "3", "4", "5", "6"]
    assert ids("minDisk=20&minRam=4096") == ["3", "4", "5"]
    assert ids("sort_key=memory_mb&sort_dir=desc") == ["5", "4", "3", "2", "6", "1"]
    assert ids("is_public=None") == PUBLIC + ["6"]    # a member sees public ones only
    for bad in ("minRam=x", "minDisk=-1", "sort_key=nope", "sort_dir=up", "limit=-1",
                "limit=a", "is_public=maybe"):
        assert bad.split("=")[0] in fault(member.get("/flavors?" + bad), 400)


def test_paging_with_limit_and_marker(member, flavors):
    r = member.get("/flavors?limit=2&minRam=1")
    body = r.get_json()
    assert [f["id"] for f in body["flavors"]] == ["1", "2"]
    assert body["flavors_links"] == [{"rel": "next", "href": BASE + ROOT +
                                      "/flavors?limit=2&minRam=1&marker=2"}]
    r = member.get("/flavors/detail?marker=2")
    assert [f["id"] for f in r.get_json()["flavors"]] == ["3", "4", "5", "6"]
    r = member.get("/flavors?sort_key=memory_mb&marker=6&limit=2")
    assert [f["id"] for f in r.get_json()["flavors"]] == ["2", "3"]
    assert member.get("/flavors?limit=0").get_json()["flavors"] == []
    assert "marker" in fault(member.get("/flavors?marker=nope"), 400)
    assert "marker" in fault(member.get("/flavors?marker=9"), 400)   # private: not seen


def test_private_flavors_are_seen_by_admins_and_shared_projects(admin, member, other,
                                                                flavors):
    assert fault(member.get("/flavors/9"), 404)
    assert fault(member.get("/flavors/9/os-extra_specs"), 404)
    all_ids = [f["id"] for f in admin.get("/flavors?is_public=None").get_json()["flavors"]]
    assert all_ids == PUBLIC + ["6", "9"]
    assert [f["id"] for f in admin.get("/flavors?is_public=false").get_json()["flavors"]] == ["9"]
    r = admin.post("/flavors/9/action", {"addTenantAccess": {"tenant": "p1"}})
    assert r.status_code == 200
    assert r.get_json() == {"flavor_access": [{"flavor_id": "9", "tenant_id": "p1"}]}
    assert member.get("/flavors/9").status_code == 200
    assert "9" in [f["id"] for f in member.get("/flavors").get_json()["flavors"]]
    assert other.get("/flavors/9").status_code == 404
    fault(admin.post("/flavors/9/action", {"addTenantAccess": {"tenant": "p1"}}), 409)
    assert "tenant" in fault(admin.post("/flavors/9/action",
                                        {"addTenantAccess": {"tenant": "nope"}}), 400)
    assert admin.get("/flavors/9/os-flavor-access").get_json() == r.get_json()
    fault(admin.get("/flavors/1/os-flavor-access"), 404)
    r = admin.post("/flavors/9/action", {"removeTenantAccess": {"tenant": "p1"}})
    assert r.status_code == 200 and r.get_json() == {"flavor_access": []}
    fault(admin.post("/flavors/9/action", {"removeTenantAccess": {"tenant": "p1"}}), 404)
    assert member.get("/flavors/9").status_code == 404
    fault(admin.post("/flavors/9/action", {"bogus": {}}), 400)
    fault(member.post("/flavors/9/action", {"addTenantAccess": {"tenant": "p1"}}), 403)
    fault(member.get("/flavors/9/os-flavor-access"), 403)


def test_admin_creates_and_deletes(admin, member):
    r = create(admin, id=None, **{"os-flavor-access:is_public": "False", "ram": "512",
                                  "vcpus": "2", "swap": 0, "rxtx_factor": "1.5"})
    assert r.status_code == 200, r.get_data(as_text=True)
    flavor = r.get_json()["flavor"]
    assert set(flavor) == DETAIL_KEYS
    assert flavor["ram"] == 512 and flavor["vcpus"] == 2 and flavor["rxtx_factor"] == 1.5
    assert flavor["os-flavor-access:is_public"] is False and len(flavor["id"]) == 36
    assert admin.get("/flavors/%s" % flavor["id"]).get_json() == {"flavor": flavor}
    r = create(admin, name="f2", id=42)
    assert r.get_json()["flavor"]["id"] == "42"
    assert "already exists" in fault(create(admin, name="f3", id="42"), 409)
    assert "already exists" in fault(create(admin, name="f2"), 409)
    r = admin.delete("/flavors/42")
    assert r.status_code == 202 and r.get_data() == b""
    fault(admin.get("/flavors/42"), 404)
    fault(admin.delete("/flavors/42"), 404)
    assert create(admin, name="f2", id=42).status_code == 200   # id and name free again


def test_a_null_description_as_openstacksdk_sends_it_is_no_description(admin):
    r = create(admin, name="sdk.tiny", description=None)
    assert r.status_code == 200, r.get_data(as_text=True)
    assert set(r.get_json()["flavor"]) == DETAIL_KEYS   # nothing of 2.55 answered
    assert "flavor.description" in fault(create(admin, name="f9", description="small"), 400)


@pytest.mark.parametrize("flavor,field", [
    ({"ram": 0}, "flavor.ram"), ({"ram": "x"}, "flavor.ram"), ({"vcpus": -1}, "flavor.vcpus"),
    ({"vcpus": 2 ** 31}, "flavor.vcpus"), ({"disk": "-1"}, "flavor.disk"),
    ({"name": " pad"}, "flavor.name"), ({"name": ""}, "flavor.name"),
    ({"id": "a/b"}, "flavor.id"), ({"id": " x"}, "flavor.id"),
    ({"rxtx_factor": 0}, "flavor.rxtx_factor"), ({"rxtx_factor": "-1"}, "flavor.rxtx_factor"),
    ({"os-flavor-access:is_public": "maybe"}, "flavor.os-flavor-access:is_public"),
    ({"swap": 1.5}, "flavor.swap"), ({"bogus": 1}, "flavor"),
])
def test_bad_create_names_the_field(admin, flavor, field):
    assert field in fault(create(admin, **flavor), 400)


def test_create_is_for_admins(member, reader, flavors):
    fault(create(member), 403)
    fault(reader.post("/flavors", {"flavor": {"name": "x", "ram": 1, "vcpus": 1}}), 403)
    fault(member.delete("/flavors/1"), 403)


def test_extra_specs(admin, member, flavors):
    assert member.get("/flavors/1/os-extra_specs").get_json() == {"extra_specs": {}}
    r = admin.post("/flavors/1/os-extra_specs",
                   {"extra_specs": {"hw:cpu_policy": "dedicated", "k2": True, "k3": 4}})
    assert r.status_code == 200
    assert r.get_json() == {"extra_specs": {"hw:cpu_policy": "dedicated", "k2": "True",
                                            "k3": "4"}}
    assert member.get("/flavors/1/os-extra_specs").get_json() == r.get_json()
    assert member.get("/flavors/1/os-extra_specs/k3").get_json() == {"k3": "4"}
    r = admin.put("/flavors/1/os-extra_specs/k3", {"k3": "five"})
    assert r.status_code == 200 and r.get_json() == {"k3": "five"}
    fault(admin.put("/flavors/1/os-extra_specs/k3", {"k4": "x"}), 400)
    fault(admin.put("/flavors/1/os-extra_specs/k3", {"k3": "x", "k4": "y"}), 400)
    fault(admin.post("/flavors/1/os-extra_specs", {"extra_specs": {"bad/key": "x"}}), 400)
    fault(admin.post("/flavors/1/os-extra_specs", {"extra_specs": {"k": "x" * 256}}), 400)
    r = admin.delete("/flavors/1/os-extra_specs/k3")
    assert r.status_code == 200
    fault(admin.delete("/flavors/1/os-extra_specs/k3"), 404)
    fault(member.get("/flavors/1/os-extra_specs/k3"), 404)
    fault(member.post("/flavors/1/os-extra_specs", {"extra_specs": {"a": "b"}}), 403)
    fault(admin.post("/flavors/nope/os-extra_specs", {"extra_specs": {"a": "b"}}), 404)
    assert admin.delete("/flavors/1").status_code == 202   # its specs go with it
