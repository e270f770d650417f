"""openstacksdk, unmodified, on a real stack (API on waitress, PostgreSQL,
RabbitMQ, a compute on the fake driver), as a member: its proxy layer
(conn.compute: create_server + wait_for_server, servers, get_server,
get_limits, delete_server + wait_for_delete) and its cloud layer
(create_server(wait=True), list_servers, get_compute_limits,
delete_server(wait=True)), through the real version discovery and
microversion negotiation. Also the server actions, metadata, console and
instance actions through the proxy, and an admin's flavor through the cloud
layer (which sends ``description: null`` at 2.1).

There are no floating IPs (no network service): the connections say so
with ``floating_ip_source: None`` as `make run`'s clouds.yaml does, else
the cloud layer's create_server asks Nova for a floating IP pool."""
import os

import openstack
import pytest

from mininova_lab.stack import qemu_img_create
from mininova_lab.waiting import wait_for
from tests.functional.test_openstack_cli_admin import PASSWORD, stack  # noqa: F401 (fixture)

pytestmark = pytest.mark.real_services("rabbitmq", "postgresql", "http")

WAIT = 120   # seconds: generous, the machine is shared


@pytest.fixture(scope="module")
def image(stack):  # noqa: F811
    path = os.path.join(stack.workdir, "sdk-blank.qcow2")
    qemu_img_create(path, "1G")
    return stack.add_image("sdk-blank", path)["id"]


def connect(stack, user, project):  # noqa: F811
    return openstack.connect(
        auth_url=stack.url + "/identity/v3", username=user, password=PASSWORD,
        project_name=project, user_domain_name="Default", project_domain_name="Default",
        region_name="RegionOne", interface="public", floating_ip_source="None")


@pytest.fixture
def conn(stack):  # noqa: F811
    c = connect(stack, "osc-demo", "demo")
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
                                timeout=WAIT)
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


def test_actions_metadata_and_console_through_the_proxy(conn, image):
    flavor = conn.compute.find_flavor("m1.tiny", ignore_missing=False)
    server = conn.compute.wait_for_server(
        conn.compute.create_server(name="sdk-acts", image_id=image, flavor_id=flavor.id),
        status="ACTIVE", wait=WAIT)
    try:
        for act, status in ((conn.compute.stop_server, "SHUTOFF"),
                            (conn.compute.start_server, "ACTIVE"),
                            (conn.compute.pause_server, "PAUSED"),
                            (conn.compute.unpause_server, "ACTIVE")):
            act(server)
            assert conn.compute.wait_for_server(server, status=status, wait=WAIT).status == status
        conn.compute.reboot_server(server, "HARD")
        wait_for(lambda: "reboot" in [a.action for a in conn.compute.server_actions(server)]
                 and conn.compute.get_server(server).status == "ACTIVE", WAIT,
                 what="the hard reboot to be done")
        conn.compute.lock_server(server)
        conn.compute.unlock_server(server)

        conn.compute.set_server_metadata(server, role="web", tier="1")
        assert conn.compute.get_server_metadata(server).metadata == {"role": "web", "tier": "1"}
        conn.compute.delete_server_metadata(server, ["tier"])
        assert conn.compute.get_server_metadata(server).metadata == {"role": "web"}

        assert "output" in conn.compute.get_server_console_output(server)
        actions = [a.action for a in conn.compute.server_actions(server)]
        assert actions[-1] == "create" and {"stop", "start", "pause", "unpause",
                                             "reboot"} <= set(actions)
        assert [ip.address for ip in conn.compute.server_ips(server)] == [
            a["addr"] for addresses in conn.compute.get_server(server).addresses.values()
            for a in addresses]
    finally:
        conn.compute.delete_server(server)
        conn.compute.wait_for_delete(server, wait=WAIT)


def test_an_admins_flavor_through_the_cloud_layer(stack):  # noqa: F811
    admin = connect(stack, "osc-admin", "admin")
    try:
        flavor = admin.create_flavor("sdk.small", ram=128, vcpus=1, disk=1)
        assert admin.get_flavor("sdk.small").id == flavor.id
        admin.set_flavor_specs(flavor.id, {"hw:cpu_policy": "shared"})
        assert admin.get_flavor_by_id(flavor.id, get_extra=True).extra_specs == {
            "hw:cpu_policy": "shared"}
        assert admin.delete_flavor("sdk.small") is True
        assert admin.get_flavor("sdk.small") is None
    finally:
        admin.close()
