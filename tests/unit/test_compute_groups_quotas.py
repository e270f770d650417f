"""Server groups, limits, quota sets and quota classes on the compute
surface at 2.1: exact shapes, codes, who may see and change what, bad input."""
import pytest

from common.db import api as db_api
from common.db import auth as db_auth
from tests.unit.compute_surface import (  # noqa: F401  (fixtures)
    admin, app, fault, member, other, reader)

QUOTA_KEYS = {"instances", "cores", "ram", "metadata_items", "key_pairs", "server_groups",
              "server_group_members", "injected_files", "injected_file_content_bytes",
              "injected_file_path_bytes", "floating_ips", "fixed_ips", "security_groups",
              "security_group_rules"}
NOVA_DEFAULTS = {"instances": 10, "cores": 20, "ram": 51200, "metadata_items": 128,
                 "key_pairs": 100, "server_groups": 10, "server_group_members": 10,
                 "injected_files": 5, "injected_file_content_bytes": 10240,
                 "injected_file_path_bytes": 255, "floating_ips": -1, "fixed_ips": -1,
                 "security_groups": -1, "security_group_rules": -1}
CLASS_KEYS = QUOTA_KEYS - {"server_groups", "server_group_members"}


def group(caller, name="g1", policies=("anti-affinity",)):
    return caller.post("/os-server-groups",
                       {"server_group": {"name": name, "policies": list(policies)}})


def add_vm(db, project_id, group_id, vcpus=1, memory_mb=128):
    with db.transaction() as s:
        vm = db_api.instance_insert(s, name="vm-%s" % group_id[:8], project_id=project_id,
                                    image_id="i", flavor_id="1", vcpus=vcpus,
                                    memory_mb=memory_mb, root_gb=1, vm_state="active",
                                    group_id=group_id)
        db_auth.quota_reserve(s, project_id, NOVA_DEFAULTS, vcpus, memory_mb)
    return vm["id"]


def test_server_group_lifecycle(db, member, other, admin):
    r = group(member)
    assert r.status_code == 200
    created = r.get_json()["server_group"]
    assert set(created) == {"id", "name", "policies", "members", "metadata"}
    assert created["policies"] == ["anti-affinity"] and created["members"] == []
    assert created["metadata"] == {}
    assert member.get("/os-server-groups/%s" % created["id"]).get_json() == r.get_json()
    assert member.get("/os-server-groups").get_json() == {"server_groups": [created]}
    same = group(member, policies=["affinity"]).get_json()["server_group"]   # names may repeat
    vm = add_vm(db, "p1", created["id"])
    shown = member.get("/os-server-groups/%s" % created["id"]).get_json()["server_group"]
    assert shown["members"] == [vm]
    assert other.get("/os-server-groups").get_json() == {"server_groups": []}
    fault(other.get("/os-server-groups/%s" % created["id"]), 404)
    fault(other.delete("/os-server-groups/%s" % created["id"]), 404)
    assert admin.get("/os-server-groups").get_json() == {"server_groups": []}
    everyone = admin.get("/os-server-groups?all_projects=True").get_json()["server_groups"]
    assert {g["id"] for g in everyone} == {created["id"], same["id"]}
    assert admin.get("/os-server-groups/%s" % same["id"]).status_code == 200
    page = member.get("/os-server-groups?offset=1&limit=1").get_json()["server_groups"]
    assert [g["id"] for g in page] == [same["id"]]
    r = member.delete("/os-server-groups/%s" % created["id"])
    assert r.status_code == 204 and r.get_data() == b""
    fault(member.get("/os-server-groups/%s" % created["id"]), 404)
    fault(member.delete("/os-server-groups/%s" % created["id"]), 404)


@pytest.mark.parametrize("body,field", [
    ({"server_group": {"name": "g", "policies": ["soft-affinity"]}}, "server_group.policies"),
    ({"server_group": {"name": "g", "policies": []}}, "server_group.policies"),
    ({"server_group": {"name": "g", "policies": ["affinity", "anti-affinity"]}},
     "server_group.policies"),
    ({"server_group": {"name": "g", "policy": "affinity"}}, "server_group"),
    ({"server_group": {"name": " g", "policies": ["affinity"]}}, "server_group.name"),
    ({"server_group": {"name": "", "policies": ["affinity"]}}, "server_group.name"),
    ({"server_group": {"policies": ["affinity"]}}, "server_group.name"),
    ({}, "server_group"),
])
def test_bad_server_groups(member, body, field):
    assert field in fault(member.post("/os-server-groups", body), 400)


def test_server_groups_quota_and_reader(db, member, reader):
    with db.transaction() as s:
        from common.db import quota_sets
        quota_sets.project_set(s, "p1", {"server_groups": 1})
    assert group(member).status_code == 200
    assert "server_groups" in fault(group(member), 403)
    fault(group(reader), 403)
    assert "offset" in fault(member.get("/os-server-groups?offset=-1"), 400)


def test_limits(db, member):
    r = member.get("/limits?reserved=False")
    assert r.status_code == 200
    limits = r.get_json()["limits"]
    assert limits["rate"] == []
    absolute = limits["absolute"]
    assert list(absolute) == [
        "maxTotalInstances", "maxTotalCores", "maxTotalRAMSize", "totalInstancesUsed",
        "totalCoresUsed", "totalRAMUsed", "maxServerMeta", "maxImageMeta", "maxPersonality",
        "maxPersonalitySize", "maxTotalKeypairs", "maxSecurityGroups", "maxSecurityGroupRules",
        "maxTotalFloatingIps", "totalFloatingIpsUsed", "totalSecurityGroupsUsed",
        "maxServerGroups", "maxServerGroupMembers", "totalServerGroupsUsed"]
    assert absolute["maxTotalInstances"] == 10 and absolute["maxServerMeta"] == 128
    gid = group(member).get_json()["server_group"]["id"]
    add_vm(db, "p1", gid, vcpus=2, memory_mb=256)
    absolute = member.get("/limits").get_json()["limits"]["absolute"]
    assert (absolute["totalInstancesUsed"], absolute["totalCoresUsed"],
            absolute["totalRAMUsed"], absolute["totalServerGroupsUsed"]) == (1, 2, 256, 1)
    fault(member.get("/limits?tenant_id=p2"), 403)


def test_quota_sets_show_defaults_detail(db, member, admin):
    r = member.get("/os-quota-sets/p1?user_id=someone")
    assert r.status_code == 200
    assert r.get_json() == {"quota_set": dict(NOVA_DEFAULTS, id="p1")}
    assert member.get("/os-quota-sets/p1/defaults").get_json() == r.get_json()
    add_vm(db, "p1", group(member).get_json()["server_group"]["id"], vcpus=2)
    detail = member.get("/os-quota-sets/p1/detail").get_json()["quota_set"]
    assert detail.pop("id") == "p1" and set(detail) == QUOTA_KEYS
    assert detail["cores"] == {"limit": 20, "in_use": 2, "reserved": 0}
    assert detail["server_groups"] == {"limit": 10, "in_use": 1, "reserved": 0}
    fault(member.get("/os-quota-sets/p2"), 403)
    fault(member.get("/os-quota-sets/p2/detail"), 403)
    assert admin.get("/os-quota-sets/p2").status_code == 200


def test_quota_set_update_and_reset(db, member, admin):
    add_vm(db, "p1", group(member).get_json()["server_group"]["id"], vcpus=4)
    r = admin.put("/os-quota-sets/p1", {"quota_set": {"instances": "5", "metadata_items": 3,
                                                      "server_group_members": -1}})
    assert r.status_code == 200, r.get_data(as_text=True)
    body = r.get_json()["quota_set"]
    assert "id" not in body and set(body) == QUOTA_KEYS
    assert (body["instances"], body["metadata_items"], body["server_group_members"]) == (5, 3, -1)
    assert member.get("/os-quota-sets/p1").get_json()["quota_set"]["instances"] == 5
    assert member.get("/limits").get_json()["limits"]["absolute"]["maxServerMeta"] == 3
    assert "quota_set.cores" in fault(admin.put("/os-quota-sets/p1",
                                                {"quota_set": {"cores": 2}}), 400)
    assert admin.put("/os-quota-sets/p1", {"quota_set": {"cores": 2, "force": "True"}}
                     ).status_code == 200
    for body, field in [({"quota_set": {"cores": -2}}, "quota_set.cores"),
                        ({"quota_set": {"cores": "x"}}, "quota_set.cores"),
                        ({"quota_set": {"bogus": 1}}, "quota_set"),
                        ({"quota_set": {"cores": 2 ** 31}}, "quota_set.cores")]:
        assert field in fault(admin.put("/os-quota-sets/p1", body), 400)
    assert "tenant_id" in fault(admin.put("/os-quota-sets/nope", {"quota_set": {}}), 400)
    assert "user_id" in fault(admin.put("/os-quota-sets/p1?user_id=u",
                                        {"quota_set": {"cores": 3}}), 400)
    fault(member.put("/os-quota-sets/p1", {"quota_set": {"cores": 30}}), 403)
    fault(member.delete("/os-quota-sets/p1"), 403)
    r = admin.delete("/os-quota-sets/p1")
    assert r.status_code == 202
    assert member.get("/os-quota-sets/p1").get_json()["quota_set"]["instances"] == 10


def test_quota_classes(db, admin, member):
    r = admin.get("/os-quota-class-sets/default")
    assert r.status_code == 200
    body = r.get_json()["quota_class_set"]
    assert body.pop("id") == "default" and set(body) == CLASS_KEYS
    raised = {key: value + 100 for key, value in body.items()}
    r = admin.put("/os-quota-class-sets/default", {"quota_class_set": raised})
    assert r.status_code == 200
    assert r.get_json() == {"quota_class_set": raised}
    shown = admin.get("/os-quota-class-sets/default").get_json()["quota_class_set"]
    assert shown == dict(raised, id="default")
    # The default class is every project's default, enforced ones included.
    assert member.get("/os-quota-sets/p1").get_json()["quota_set"]["instances"] == 110
    with db.transaction() as s:
        assert db_auth.quota_limits(s, "p1", NOVA_DEFAULTS)["instances"] == 110
    admin.put("/os-quota-class-sets/default", {"quota_class_set": {"instances": 0}})
    gid = group(member).get_json()["server_group"]["id"]
    with pytest.raises(Exception, match="instances"):
        add_vm(db, "p1", gid)
    fault(member.get("/os-quota-class-sets/default"), 403)
    fault(member.put("/os-quota-class-sets/default", {"quota_class_set": {"cores": 1}}), 403)
    assert "quota_class_set.cores" in fault(admin.put(
        "/os-quota-class-sets/default", {"quota_class_set": {"cores": -5}}), 400)
