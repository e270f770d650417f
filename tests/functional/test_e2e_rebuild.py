"""Rebuild on the real stack with a real guest (libvirt/QEMU, the tiny
image): POST /compute/v2.1/servers/{id}/action {"rebuild"} takes the server
through REBUILD back to ACTIVE on a fresh disk; the new guest boots with the
same fixed IP (its console says so), and the instance actions show
create and rebuild."""
import re

import pytest

from mininova_lab.waiting import wait_for

pytestmark = pytest.mark.real_services("rabbitmq", "postgresql", "libvirt", "http")

COMPUTE = "/compute/v2.1"
UP = re.compile(r"MININOVA-GUEST-UP ip=(\d+\.\d+\.\d+\.\d+)")


def server(stack, server_id):
    body = stack.get(COMPUTE + "/servers/" + server_id).json()["server"]
    assert body["status"] != "ERROR", body.get("fault")
    return body


def wait_active(stack, server_id):
    return wait_for(lambda: (lambda s: s if s["status"] == "ACTIVE"
                             and s["OS-EXT-STS:task_state"] is None else None)(
        server(stack, server_id)), 180, interval=0.2, what="server %s ACTIVE" % server_id)


def guest_ip(stack, server_id):
    def up():
        r = stack.post(COMPUTE + "/servers/%s/action" % server_id,
                       {"os-getConsoleOutput": {"length": 200}})
        match = UP.search(r.json()["output"]) if r.status_code == 200 else None
        return match.group(1) if match else None
    return wait_for(up, 180, interval=0.5, what="the guest of %s to come up" % server_id)


def test_rebuild_boots_a_fresh_guest_with_the_same_address(stack):
    flavors = stack.get(COMPUTE + "/flavors").json()["flavors"]
    flavor = next(f["id"] for f in flavors if f["name"] == "m1.tiny")
    r = stack.post(COMPUTE + "/servers", {"server": {
        "name": "rebuild-me", "imageRef": stack.tiny["id"], "flavorRef": flavor}})
    assert r.status_code == 202, r.text
    server_id = r.json()["server"]["id"]
    try:
        wait_active(stack, server_id)
        ip = guest_ip(stack, server_id)

        r = stack.post(COMPUTE + "/servers/%s/action" % server_id, {"rebuild": {
            "imageRef": stack.tiny["id"], "name": "rebuilt", "metadata": {"gen": "2"}}})
        assert r.status_code == 202, r.text
        assert r.json()["server"]["status"] == "REBUILD"
        after = wait_active(stack, server_id)
        assert (after["name"], after["metadata"]) == ("rebuilt", {"gen": "2"})
        (nic,), = after["addresses"].values()
        assert nic["addr"] == ip
        assert guest_ip(stack, server_id) == ip
        # A fresh guest: the old domain and its console log went with the rebuild.
        console = stack.post(COMPUTE + "/servers/%s/action" % server_id,
                             {"os-getConsoleOutput": {}}).json()["output"]
        assert len(UP.findall(console)) == 1
        actions = stack.get(COMPUTE + "/servers/%s/os-instance-actions" % server_id).json()
        assert [a["action"] for a in actions["instanceActions"]] == ["rebuild", "create"]
    finally:
        stack.delete(COMPUTE + "/servers/" + server_id)
        stack.wait_gone(server_id, timeout=120)
