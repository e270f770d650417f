"""The unmodified ``openstack`` CLI's server commands at 2.1 on a real stack
(API on waitress, PostgreSQL, RabbitMQ, a compute on the fake driver), as a
member: server create --wait (the image and flavor looked up by name, a
property), list --long, show by name (OSC's 404 on the name, then
``?name=``), set --name, delete --wait; an admin's list --all-projects and
show by id."""
import os

import pytest

from mininova_lab.stack import qemu_img_create
from tests.functional.test_openstack_cli_admin import osc, stack  # noqa: F401  (fixture)

pytestmark = pytest.mark.real_services("rabbitmq", "postgresql", "http")


@pytest.fixture(scope="module")
def image(stack):  # noqa: F811
    path = os.path.join(stack.workdir, "osc-blank.qcow2")
    qemu_img_create(path, "1G")
    return stack.add_image("osc-blank", path)


def test_server_lifecycle(stack, image):  # noqa: F811
    created = osc(stack, "demo", "server", "create", "--image", "osc-blank", "--flavor",
                  "m1.tiny", "--property", "role=web", "--wait", "vm1", "-f", "json")
    assert (created["name"], created["status"]) == ("vm1", "ACTIVE")
    assert created["OS-EXT-STS:task_state"] is None
    listed = osc(stack, "demo", "server", "list", "--long", "-f", "json")
    # -f json shows the power state as the API's integer (1: running).
    assert [(s["ID"], s["Name"], s["Status"], s["Power State"]) for s in listed] == [
        (created["id"], "vm1", "ACTIVE", 1)]
    assert listed[0]["Image Name"] == "osc-blank" and listed[0]["Flavor Name"] == "m1.tiny"
    shown = osc(stack, "demo", "server", "show", "vm1", "-f", "json")
    assert shown["id"] == created["id"] and shown["flavor"].startswith("m1.tiny")
    assert shown["properties"] == {"role": "web"}
    assert osc(stack, "admin", "server", "show", "vm1", check=False).returncode != 0
    everyone = osc(stack, "admin", "server", "list", "--all-projects", "-f", "json")
    assert [s["ID"] for s in everyone] == [created["id"]]
    as_admin = osc(stack, "admin", "server", "show", created["id"], "-f", "json")
    assert as_admin["OS-EXT-SRV-ATTR:host"] == stack.host

    osc(stack, "demo", "server", "set", "--name", "web1", "vm1")
    assert osc(stack, "demo", "server", "show", "web1", "-f", "json")["id"] == created["id"]
    assert osc(stack, "demo", "server", "show", "vm1", check=False).returncode != 0

    osc(stack, "demo", "server", "delete", "--wait", "web1")
    assert osc(stack, "demo", "server", "list", "-f", "json") == []
