"""Every response of the compute resources beside servers, checked with
tempest's own v2_1 response schemas and validator (what tempest runs on
each call: exact status codes, ``additionalProperties: false``, its time
formats): nothing of a later microversion may appear at 2.1."""
import datetime

import pytest
from tempest.lib.api_schema.response.compute.v2_1 import (
    availability_zone, extensions, flavors, flavors_access, flavors_extra_specs, hypervisors,
    keypairs, limits, quota_classes, quotas, server_groups, services)
from tempest.lib.common import rest_client

from common.db import api as db_api
from common.db.models import Service
from tests.unit.compute_surface import admin, app, member  # noqa: F401  (fixtures)

RESOURCES = {"vcpus": 8, "memory_mb": 16384, "local_gb": 100, "hypervisor_type": "QEMU"}
ECDSA = ("ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBBtVbYAaWWS"
         "7ZW0VY3aEqczcazLb4MDTqiuxnU1UrZyLcSoFubDMoBz5ItnXBk+c4HaHXN69bERsYvMtrYZfaNc= t")


class Response(dict):
    """What tempest's validate_response reads of a response: its status
    and (for header schemas) its headers."""

    def __init__(self, flask_response):
        super().__init__({k.lower(): v for k, v in flask_response.headers.items()})
        self.status = flask_response.status_code


def check(schema, r):
    body = r.get_json() if r.get_data() else ""
    rest_client.RestClient.validate_response(schema, Response(r), body)
    return body


@pytest.fixture
def compute_host(db):
    with db.transaction() as s:
        svc = db_api.service_heartbeat(s, "node1", "mininova-compute", RESOURCES)
        db_api.service_heartbeat(s, "ctl1", "mininova-scheduler")
        vm = db_api.instance_insert(s, name="vm1", project_id="p1", image_id="i", flavor_id="1",
                                    vcpus=1, memory_mb=128, root_gb=1, vm_state="active",
                                    host="node1")
        s.get(Service, svc.id).last_heartbeat -= datetime.timedelta(seconds=1)
    return svc.id, vm["id"]


def test_flavors(admin, member):
    check(flavors.list_flavors, member.get("/flavors?limit=2"))
    check(flavors.list_flavors_details, member.get("/flavors/detail"))
    check(flavors.create_update_get_flavor_details, member.get("/flavors/1"))
    flavor = {"name": "t", "ram": "512", "vcpus": "1", "disk": 1, "id": None, "swap": 256,
              "os-flavor-access:is_public": "False", "OS-FLV-EXT-DATA:ephemeral": 1}
    body = check(flavors.create_update_get_flavor_details,
                 admin.post("/flavors", {"flavor": flavor}))
    fid = body["flavor"]["id"]
    add = {"addTenantAccess": {"tenant": "p1"}}
    check(flavors_access.add_remove_list_flavor_access, admin.post("/flavors/%s/action" % fid,
                                                                   add))
    check(flavors_access.add_remove_list_flavor_access,
          admin.get("/flavors/%s/os-flavor-access" % fid))
    check(flavors_access.add_remove_list_flavor_access, admin.post(
        "/flavors/%s/action" % fid, {"removeTenantAccess": {"tenant": "p1"}}))
    specs = "/flavors/%s/os-extra_specs" % fid
    check(flavors_extra_specs.set_get_flavor_extra_specs,
          admin.post(specs, {"extra_specs": {"k1": "v1", "k2": "v2"}}))
    check(flavors_extra_specs.set_get_flavor_extra_specs, admin.get(specs))
    check(flavors_extra_specs.set_get_flavor_extra_specs_key, admin.get(specs + "/k1"))
    check(flavors_extra_specs.set_get_flavor_extra_specs_key,
          admin.put(specs + "/k1", {"k1": "v3"}))
    check(flavors_extra_specs.unset_flavor_extra_specs, admin.delete(specs + "/k1"))
    check(flavors.delete_flavor, admin.delete("/flavors/%s" % fid))


def test_keypairs(member):
    check(keypairs.create_keypair, member.post("/os-keypairs", {"keypair": {
        "name": "imported", "public_key": ECDSA}}))
    check(keypairs.create_keypair, member.post("/os-keypairs", {"keypair": {"name": "made"}}))
    check(keypairs.list_keypairs, member.get("/os-keypairs"))
    check(keypairs.get_keypair, member.get("/os-keypairs/made"))
    check(keypairs.delete_keypair, member.delete("/os-keypairs/made"))


def test_server_groups(member):
    body = check(server_groups.create_show_server_group, member.post("/os-server-groups", {
        "server_group": {"name": "g", "policies": ["affinity"]}}))
    gid = body["server_group"]["id"]
    check(server_groups.create_show_server_group, member.get("/os-server-groups/%s" % gid))
    check(server_groups.list_server_groups, member.get("/os-server-groups"))
    check(server_groups.delete_server_group, member.delete("/os-server-groups/%s" % gid))


def test_limits_and_quotas(admin, member):
    check(limits.get_limit, member.get("/limits"))
    check(quotas.get_quota_set, member.get("/os-quota-sets/p1?user_id=u"))
    check(quotas.get_quota_set, member.get("/os-quota-sets/p1/defaults"))
    check(quotas.get_quota_set_details, member.get("/os-quota-sets/p1/detail"))
    check(quotas.update_quota_set, admin.put("/os-quota-sets/p1", {"quota_set": {
        "instances": 11, "server_groups": 3}}))
    check(quotas.delete_quota, admin.delete("/os-quota-sets/p1"))
    body = check(quota_classes.get_quota_class_set, admin.get("/os-quota-class-sets/default"))
    raised = {k: v + 100 for k, v in body["quota_class_set"].items() if k != "id"}
    check(quota_classes.update_quota_class_set, admin.put(
        "/os-quota-class-sets/default", {"quota_class_set": raised}))


def test_admin_views(admin, member, compute_host):
    hid, _ = compute_host
    check(availability_zone.list_availability_zone_list, member.get("/os-availability-zone"))
    check(availability_zone.list_availability_zone_list_detail,
          admin.get("/os-availability-zone/detail"))
    check(services.list_services, admin.get("/os-services?binary=nova-compute"))
    check(services.enable_disable_service, admin.put("/os-services/disable", {
        "host": "node1", "binary": "nova-compute"}))
    check(services.disable_log_reason, admin.put("/os-services/disable-log-reason", {
        "host": "node1", "binary": "nova-compute", "disabled_reason": "r"}))
    check(services.enable_disable_service, admin.put("/os-services/enable", {
        "host": "node1", "binary": "nova-compute"}))
    check(hypervisors.list_search_hypervisors, admin.get("/os-hypervisors"))
    check(hypervisors.list_hypervisors_detail, admin.get("/os-hypervisors/detail"))
    check(hypervisors.get_hypervisor, admin.get("/os-hypervisors/%d" % hid))
    check(hypervisors.get_hypervisor_statistics, admin.get("/os-hypervisors/statistics"))
    check(hypervisors.get_hypervisor_uptime, admin.get("/os-hypervisors/%d/uptime" % hid))
    check(hypervisors.list_search_hypervisors, admin.get("/os-hypervisors/node/search"))
    check(hypervisors.get_hypervisors_servers, admin.get("/os-hypervisors/node1/servers"))
    check(extensions.list_extensions, member.get("/extensions"))
