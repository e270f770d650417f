"""The admin views of the compute surface at 2.1: os-services (and
enabling/disabling a host), availability zones, hypervisors, and the static
extensions list. Exact keys, Nova's binary names and zones, 403 for members,
404s, bad bodies."""
import datetime

import pytest

from common.db import allocations
from common.db import api as db_api
from common.db.allocations import Resources
from common.db.models import Service
from tests.unit.compute_surface import (  # noqa: F401  (fixtures)
    admin, app, fault, member, other, reader)

SERVICE_KEYS = {"id", "binary", "host", "zone", "status", "state", "updated_at",
                "disabled_reason"}
HYPERVISOR_KEYS = {"id", "hypervisor_hostname", "state", "status", "hypervisor_type",
                   "hypervisor_version", "host_ip", "cpu_info", "vcpus", "vcpus_used",
                   "memory_mb", "memory_mb_used", "free_ram_mb", "local_gb", "local_gb_used",
                   "free_disk_gb", "disk_available_least", "running_vms", "current_workload",
                   "service"}
RESOURCES = {"vcpus": 8, "memory_mb": 16384, "local_gb": 100, "hypervisor_type": "QEMU",
             "hypervisor_version": 8000000, "cpu_info": {"arch": "x86_64", "cores": 4}}


@pytest.fixture
def hosts(db):
    """node1 and node2 computes (node2 silent for an hour), a scheduler on
    ctl1, and a VM on node1; {host: compute service id}."""
    with db.transaction() as s:
        ids = {h: db_api.service_heartbeat(s, h, "mininova-compute", RESOURCES).id
               for h in ("node1", "node2")}
        db_api.service_heartbeat(s, "ctl1", "mininova-scheduler")
        s.get(Service, ids["node2"]).last_heartbeat -= datetime.timedelta(hours=1)
        vm = db_api.instance_insert(s, name="vm1", project_id="p1", image_id="i", flavor_id="1",
                                    vcpus=2, memory_mb=512, root_gb=1, vm_state="active",
                                    host="node1", task_state="rebooting")
        allocations.allocate(s, vm["id"], "node1", Resources(2, 512, 1), (1.0, 1.0, 1.0))
    ids["vm1"] = vm["id"]
    return ids


def test_services_list_and_filters(admin, hosts):
    r = admin.get("/os-services")
    assert r.status_code == 200
    services = r.get_json()["services"]
    assert all(set(svc) == SERVICE_KEYS for svc in services)
    by_host = {(svc["host"], svc["binary"]): svc for svc in services}
    node1 = by_host[("node1", "nova-compute")]
    assert node1["zone"] == "nova" and node1["state"] == "up" and node1["status"] == "enabled"
    assert node1["id"] == hosts["node1"] and "Z" not in node1["updated_at"]
    assert by_host[("node2", "nova-compute")]["state"] == "down"
    assert by_host[("ctl1", "nova-scheduler")]["zone"] == "internal"
    assert [s["host"] for s in admin.get("/os-services?binary=nova-compute&host=node2")
            .get_json()["services"]] == ["node2"]
    assert admin.get("/os-services?host=xxx&binary=nova-compute").get_json() == {"services": []}
    assert admin.get("/os-services?xxx=nova-compute").get_json()["services"] == services


def test_disable_and_enable_a_compute(admin, hosts):
    r = admin.put("/os-services/disable", {"host": "node1", "binary": "nova-compute"})
    assert r.status_code == 200
    assert r.get_json() == {"service": {"host": "node1", "binary": "nova-compute",
                                        "status": "disabled"}}
    r = admin.put("/os-services/disable-log-reason",
                  {"host": "node1", "binary": "nova-compute", "disabled_reason": "maint"})
    assert r.get_json()["service"] == {"host": "node1", "binary": "nova-compute",
                                       "status": "disabled", "disabled_reason": "maint"}
    svc = admin.get("/os-services?host=node1").get_json()["services"][0]
    assert svc["status"] == "disabled" and svc["disabled_reason"] == "maint"
    r = admin.put("/os-services/enable", {"host": "node1", "binary": "nova-compute"})
    assert r.get_json()["service"]["status"] == "enabled"
    svc = admin.get("/os-services?host=node1").get_json()["services"][0]
    assert svc["status"] == "enabled" and svc["disabled_reason"] is None
    fault(admin.put("/os-services/disable", {"host": "nope", "binary": "nova-compute"}), 404)
    assert "host" in fault(admin.put("/os-services/disable", {"binary": "nova-compute"}), 400)
    assert "disabled_reason" in fault(admin.put(
        "/os-services/disable-log-reason", {"host": "node1", "binary": "nova-compute"}), 400)
    fault(admin.put("/os-services/disable", {"host": "node1", "binary": "x", "zone": "z"}), 400)


def test_availability_zones(admin, member, hosts):
    r = member.get("/os-availability-zone")
    assert r.status_code == 200
    assert r.get_json() == {"availabilityZoneInfo": [
        {"zoneName": "nova", "zoneState": {"available": True}, "hosts": None}]}
    zones = admin.get("/os-availability-zone/detail").get_json()["availabilityZoneInfo"]
    assert [z["zoneName"] for z in zones] == ["internal", "nova"]
    internal, nova = zones
    assert set(internal["hosts"]) == {"ctl1"} and set(nova["hosts"]) == {"node1", "node2"}
    node1 = nova["hosts"]["node1"]["nova-compute"]
    assert node1["available"] is True and node1["active"] is True and node1["updated_at"]
    assert nova["hosts"]["node2"]["nova-compute"]["available"] is False
    fault(member.get("/os-availability-zone/detail"), 403)


def test_hypervisors(admin, hosts):
    listed = admin.get("/os-hypervisors").get_json()["hypervisors"]
    assert listed == [
        {"id": hosts["node1"], "hypervisor_hostname": "node1", "state": "up",
         "status": "enabled"},
        {"id": hosts["node2"], "hypervisor_hostname": "node2", "state": "down",
         "status": "enabled"}]
    detail = admin.get("/os-hypervisors/detail").get_json()["hypervisors"]
    assert all(set(h) == HYPERVISOR_KEYS for h in detail)
    node1 = detail[0]
    assert (node1["vcpus_used"], node1["memory_mb_used"], node1["free_ram_mb"],
            node1["running_vms"], node1["current_workload"]) == (2, 512, 15872, 1, 1)
    assert node1["cpu_info"] == '{"arch": "x86_64", "cores": 4}'   # a JSON string below 2.28
    assert node1["hypervisor_type"] == "QEMU" and node1["hypervisor_version"] == 8000000
    assert node1["service"] == {"host": "node1", "id": hosts["node1"], "disabled_reason": None}
    assert admin.get("/os-hypervisors/%d" % hosts["node1"]).get_json() == {
        "hypervisor": node1}
    stats = admin.get("/os-hypervisors/statistics").get_json()["hypervisor_statistics"]
    assert stats["count"] == 2 and stats["vcpus"] == 16 and stats["running_vms"] == 1
    assert set(stats) == {"count", "vcpus", "vcpus_used", "memory_mb", "memory_mb_used",
                          "free_ram_mb", "local_gb", "local_gb_used", "free_disk_gb",
                          "disk_available_least", "running_vms", "current_workload"}
    up = admin.get("/os-hypervisors/%d/uptime" % hosts["node1"]).get_json()["hypervisor"]
    assert up.pop("uptime") and up == listed[0]
    found = admin.get("/os-hypervisors/node/search").get_json()["hypervisors"]
    assert found == listed
    servers = admin.get("/os-hypervisors/node1/servers").get_json()["hypervisors"]
    assert servers == [dict(listed[0], servers=[{"uuid": hosts["vm1"], "name": "vm1"}])]
    assert admin.get("/os-hypervisors/node2/servers").get_json()["hypervisors"] == [listed[1]]
    for path in ("/os-hypervisors/999", "/os-hypervisors/not-an-id",
                 "/os-hypervisors/999/uptime", "/os-hypervisors/zzz/search",
                 "/os-hypervisors/zzz/servers"):
        fault(admin.get(path), 404)


def test_no_aggregates(admin, member):
    assert admin.get("/os-aggregates").get_json() == {"aggregates": []}
    fault(member.get("/os-aggregates"), 403)


@pytest.mark.parametrize("path", [
    "/os-services", "/os-hypervisors", "/os-hypervisors/detail", "/os-hypervisors/statistics",
    "/os-hypervisors/1", "/os-hypervisors/1/uptime", "/os-hypervisors/node1/search",
    "/os-hypervisors/node1/servers"])
def test_admin_views_are_forbidden_to_members(member, hosts, path):
    fault(member.get(path), 403)


def test_members_cannot_disable_services(member, reader, hosts):
    fault(member.put("/os-services/disable", {"host": "node1", "binary": "nova-compute"}), 403)
    fault(reader.put("/os-services/disable", {"host": "node1", "binary": "nova-compute"}), 403)


def test_extensions(member):
    r = member.get("/extensions")
    extensions = r.get_json()["extensions"]
    assert "Hosts" in [e["name"] for e in extensions]
    assert all(set(e) == {"alias", "name", "description", "links", "namespace", "updated"}
               for e in extensions)
    shown = member.get("/extensions/os-consoles").get_json()["extension"]
    assert shown["alias"] == "os-consoles"
    fault(member.get("/extensions/nope"), 404)
