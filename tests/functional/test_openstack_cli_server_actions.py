"""The unmodified ``openstack`` CLI's server actions at 2.1 on a real stack
(API on waitress, PostgreSQL, RabbitMQ, a compute on the fake driver), as a
member: stop, start, pause, unpause, suspend, resume, reboot --hard --wait,
console log show --lines, server event list/show (create and reboot, as
Nova names them), set/unset --property (server metadata), lock (a locked
server refuses the member's stop) and unlock; server rebuild --wait to
another image, of an active and of a stopped server (which stays stopped);
server image create --wait and server backup create --rotate (createImage,
createBackup)."""
import os

import pytest

from mininova_lab.stack import qemu_img_create
from mininova_lab.waiting import wait_for
from tests.functional.test_openstack_cli_admin import osc, stack  # noqa: F401  (fixture)

pytestmark = pytest.mark.real_services("rabbitmq", "postgresql", "http")


@pytest.fixture(scope="module")
def image(stack):  # noqa: F811
    path = os.path.join(stack.workdir, "osc-actions.qcow2")
    qemu_img_create(path, "1G")
    return stack.add_image("osc-actions", path)


def wait_status(stack, name, status):  # noqa: F811
    def settled():
        shown = osc(stack, "demo", "server", "show", name, "-f", "json")
        return shown if (shown["status"] == status
                         and shown["OS-EXT-STS:task_state"] is None) else None
    return wait_for(settled, 120, what="server %s to be %s" % (name, status))


def test_server_actions(stack, image):  # noqa: F811
    created = osc(stack, "demo", "server", "create", "--image", "osc-actions", "--flavor",
                  "m1.tiny", "--wait", "act1", "-f", "json")
    assert created["status"] == "ACTIVE"
    for action, status in (("stop", "SHUTOFF"), ("start", "ACTIVE"), ("pause", "PAUSED"),
                           ("unpause", "ACTIVE"), ("suspend", "SUSPENDED"),
                           ("resume", "ACTIVE")):
        osc(stack, "demo", "server", action, "act1")
        wait_status(stack, "act1", status)
    refused = osc(stack, "demo", "server", "resume", "act1", check=False)
    assert refused.returncode != 0 and "409" in refused.stderr + refused.stdout

    osc(stack, "demo", "server", "reboot", "--hard", "--wait", "act1")
    wait_status(stack, "act1", "ACTIVE")

    log = osc(stack, "demo", "console", "log", "show", "--lines", "3", "act1")
    assert log.returncode == 0 and len(log.stdout.splitlines()) <= 3, log.stdout

    events = osc(stack, "demo", "server", "event", "list", "act1", "-f", "json")
    actions = [e["Action"] for e in events]
    assert actions[0] == "reboot" and actions[-1] == "create", actions
    assert set(actions) <= {"create", "stop", "start", "pause", "unpause", "suspend",
                            "resume", "reboot"}
    shown = osc(stack, "demo", "server", "event", "show", "act1", events[0]["Request ID"],
                "-f", "json")
    assert shown["action"] == "reboot" and shown["request_id"] == events[0]["Request ID"]

    osc(stack, "demo", "server", "set", "--property", "color=blue", "--property", "n=1",
        "act1")
    shown = osc(stack, "demo", "server", "show", "act1", "-f", "json")
    assert shown["properties"] == {"color": "blue", "n": "1"}
    osc(stack, "demo", "server", "unset", "--property", "n", "act1")
    assert osc(stack, "demo", "server", "show", "act1", "-f", "json")["properties"] == {
        "color": "blue"}

    osc(stack, "demo", "server", "lock", "act1")
    refused = osc(stack, "demo", "server", "stop", "act1", check=False)
    assert refused.returncode != 0 and "locked" in refused.stderr + refused.stdout
    osc(stack, "demo", "server", "unlock", "act1")
    osc(stack, "demo", "server", "stop", "act1")
    wait_status(stack, "act1", "SHUTOFF")

    osc(stack, "demo", "server", "delete", "--wait", "act1")


def test_server_rebuild(stack, image):  # noqa: F811
    path = os.path.join(stack.workdir, "osc-rebuild.qcow2")
    qemu_img_create(path, "1G")
    other = stack.add_image("osc-rebuild", path)
    created = osc(stack, "demo", "server", "create", "--image", "osc-actions", "--flavor",
                  "m1.tiny", "--wait", "reb1", "-f", "json")
    osc(stack, "demo", "server", "rebuild", "--image", "osc-rebuild", "--wait", "reb1")
    shown = wait_status(stack, "reb1", "ACTIVE")
    assert shown["id"] == created["id"] and other["id"] in shown["image"]

    osc(stack, "demo", "server", "stop", "reb1")
    wait_status(stack, "reb1", "SHUTOFF")
    osc(stack, "demo", "server", "rebuild", "--image", "osc-actions", "reb1")
    shown = wait_status(stack, "reb1", "SHUTOFF")
    assert image["id"] in shown["image"]
    events = osc(stack, "demo", "server", "event", "list", "reb1", "-f", "json")
    assert [e["Action"] for e in events] == ["rebuild", "stop", "rebuild", "create"]
    osc(stack, "demo", "server", "delete", "--wait", "reb1")


def test_server_image_and_backup_create(stack, image):  # noqa: F811
    """createImage and createBackup through the unmodified CLI (the fake
    driver's disk is a small qcow2): the image active with the server
    recorded; a second backup with --rotate 1 rotates the first out."""
    osc(stack, "demo", "server", "create", "--image", "osc-actions", "--flavor", "m1.tiny",
        "--wait", "snap1")
    server_id = osc(stack, "demo", "server", "show", "snap1", "-f", "json")["id"]
    made = osc(stack, "demo", "server", "image", "create", "--name", "snap1-img", "--wait",
               "snap1", "-f", "json")
    shown = osc(stack, "demo", "image", "show", made["id"], "-f", "json")
    assert shown["status"] == "active" and shown["properties"]["instance_uuid"] == server_id
    wait_status(stack, "snap1", "ACTIVE")

    def backups():
        listed = osc(stack, "demo", "image", "list", "--property", "image_type=backup",
                     "--status", "active", "-f", "json")
        return sorted(i["Name"] for i in listed)
    osc(stack, "demo", "server", "backup", "create", "--name", "nightly-1", "--type", "daily",
        "--rotate", "1", "--wait", "snap1")
    assert backups() == ["nightly-1"]
    wait_status(stack, "snap1", "ACTIVE")
    osc(stack, "demo", "server", "backup", "create", "--name", "nightly-2", "--type", "daily",
        "--rotate", "1", "--wait", "snap1")
    wait_for(lambda: backups() == ["nightly-2"], 60, what="nightly-1 rotated out")
    for name in ("snap1-img", "nightly-2"):
        osc(stack, "demo", "image", "delete", name)
    osc(stack, "demo", "server", "delete", "--wait", "snap1")
