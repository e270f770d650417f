"""GET /compute/v2.1/servers/{id}/ips[/{network}]: Nova's shapes, checked
with tempest 47's v2_1 schemas."""
import uuid

from tempest.lib.api_schema.response.compute.v2_1 import servers as schemas

from common import states
from common.db import api as db_api
from tests.unit.compute_surface import admin, app, fault, member, other  # noqa: F401
from tests.unit.test_compute_tempest_schemas import check


def add_server(db, ip="10.0.0.5", vm_state=states.ACTIVE, project="p1"):
    with db.transaction() as s:
        return db_api.instance_insert(
            s, name="vm1", project_id=project, user_id="u", image_id="i", flavor_id="1",
            vcpus=1, memory_mb=128, root_gb=1, vm_state=vm_state, host="node1",
            ip_address=ip, mac_address="52:54:00:00:00:01")["id"]


def network(conf):
    return conf.compute.network_name


def test_addresses_of_an_active_server(db, conf, member):
    server = add_server(db)
    body = check(schemas.list_addresses, member.get("/servers/%s/ips" % server))
    assert body == {"addresses": {network(conf): [{"version": 4, "addr": "10.0.0.5"}]}}
    body = check(schemas.list_addresses_by_network,
                 member.get("/servers/%s/ips/%s" % (server, network(conf))))
    assert body == {network(conf): [{"version": 4, "addr": "10.0.0.5"}]}


def test_no_addresses_while_building(db, conf, member):
    server = add_server(db, vm_state=states.BUILDING)
    body = check(schemas.list_addresses, member.get("/servers/%s/ips" % server))
    assert body == {"addresses": {}}
    fault(member.get("/servers/%s/ips/%s" % (server, network(conf))), 404)


def test_unknown_network_is_404(db, member):
    server = add_server(db)
    assert "nope" in fault(member.get("/servers/%s/ips/nope" % server), 404)


def test_unknown_or_foreign_server_is_404(db, conf, member, other, admin):
    server = add_server(db)
    fault(member.get("/servers/%s/ips" % uuid.uuid4()), 404)
    fault(member.get("/servers/vm1/ips"), 404)
    fault(other.get("/servers/%s/ips" % server), 404)
    fault(other.get("/servers/%s/ips/%s" % (server, network(conf))), 404)
    # An admin addresses any project's server, as in Nova.
    check(schemas.list_addresses, admin.get("/servers/%s/ips" % server))
