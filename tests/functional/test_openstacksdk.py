"""openstacksdk, unmodified, on a real stack (API on waitress, PostgreSQL,
RabbitMQ, a compute on the fake driver), as a member: its proxy layer
(conn.compute: create_server + wait_for_server, servers, get_server,
get_limits, delete_server + wait_for_delete) and its cloud layer
(create_server(wait=True), list_servers, get_compute_limits,
delete_server(wait=True)), through the real version discovery and
microversion negotiation."""
import os

import openstack
import pytest

from mininova_lab.stack import qemu_img_create
from tests.functional.test_openstack_cli_admin import PASSWORD, stack  # noqa: F401 (fixture)

pytestmark = pytest.mark.real_services("rabbitmq", "postgresql", "http")

WAIT = 120   # seconds: generous, the machine is shared


@pytest.fixture(scope="module")
def image(stack):  # noqa: F811
    path = os.path.join(stack.workdir, "sdk-blank.qcow2")
    qemu_img_create(path, "1G")
    return stack.add_image("sdk-blank", path)["id"]


@pytest.fixture
def conn(stack):  # noqa: F811
    c = openstack.connect(
        auth_url=stack.url + "/identity/v3", username="osc-demo", password=PASSWORD,
        project_name="demo", user_domain_name="Default", project_domain_name="Default",
        region_name="RegionOne", interface="public")
    try:
        yield c
    finally:
        c.close()


def test_proxy_layer(conn, image):
    flavor = conn.compute.find_flavor("m1.tiny", ignore_missing=False)
    made = conn.compute.create_server(name="sdk-proxy", image_id=image,
                                      flavor_id=flavor.id, metadata={"role": "web"})
    server = conn.compute.wait_for_server(made, status="ACTIVE", wait=WAIT)
    assert (server.id, server.name, server.status) == (made.id, "sdk-proxy", "ACTIVE")
    assert server.addresses, "no address at ACTIVE"
    assert server.metadata == {"role": "web"}
    assert [s.id for s in conn.compute.servers()] == [server.id]
    assert [s.id for s in conn.compute.servers(name="sdk-proxy")] == [server.id]
    shown = conn.compute.get_server(server.id)
    assert (shown.name, shown.status, shown.image.id, shown.flavor.id) == (
        "sdk-proxy", "ACTIVE", image, flavor.id)
    assert shown.addresses == server.addresses

    absolute = conn.compute.get_limits().absolute
    assert (absolute.instances, absolute.instances_used) == (10, 1)
    assert absolute.total_cores_used == flavor.vcpus

    conn.compute.delete_server(server)
    conn.compute.wait_for_delete(server, wait=WAIT)
    assert conn.compute.find_server(server.id) is None
    assert list(conn.compute.servers()) == []
    assert conn.compute.get_limits().absolute.instances_used == 0


def test_cloud_layer(conn, image):
    server = conn.create_server("sdk-cloud", image=image, flavor="m1.tiny", wait=True,
                                timeout=WAIT, auto_ip=False)
    assert (server.name, server.status) == ("sdk-cloud", "ACTIVE")
    assert server.addresses, "no address at ACTIVE"
    listed = conn.list_servers()
    assert [(s.id, s.status) for s in listed] == [(server.id, "ACTIVE")]
    assert conn.get_server("sdk-cloud").id == server.id

    limits = conn.get_compute_limits()
    assert (limits.max_total_instances, limits.total_instances_used) == (10, 1)

    assert conn.delete_server("sdk-cloud", wait=True, timeout=WAIT) is True
    assert conn.get_server(server.id) is None
    assert conn.list_servers() == []
    assert conn.delete_server("sdk-cloud") is False   # already gone
