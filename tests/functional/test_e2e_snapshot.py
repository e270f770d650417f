"""Snapshot on the real stack with real guests (libvirt/QEMU, the tiny image):
a running VM writes a marker to its disk (its user_data script, with dd in a
sector before the boot partition); POST /v1/vms/<id>/action {"snapshot"}
makes an image that turns active with its sums and its source recorded,
while the VM goes back to ACTIVE; a VM booted from that image reads the
marker. A VM deleted right after its snapshot was asked for leaves no half
image: the image is active and whole, or gone; no temp file is left."""
import base64
import hashlib
import os
import re
import uuid

import pytest

from mininova_lab.waiting import wait_for

pytestmark = pytest.mark.real_services("rabbitmq", "postgresql", "libvirt", "http")

SECTOR = 1000  # between the MBR and the partition at 2048: no file system's
READ = ("dd if=/dev/vda bs=512 skip=%d count=1 2>/dev/null | tr -cd 'A-Za-z0-9-'" % SECTOR)
SEEN = re.compile(r"MININOVA-DISK-SEEN \[([A-Za-z0-9-]*)\]")


def script(mark=None):
    """user_data: print what the sector holds; with ``mark``, then write it."""
    lines = ["#!/bin/sh", 'echo "MININOVA-DISK-SEEN [$(%s)]"' % READ]
    if mark:
        lines += ["{ printf '%s'; head -c 512 /dev/zero; } | head -c 512 | "
                  "dd of=/dev/vda bs=512 seek=%d conv=notrunc,fsync 2>/dev/null" % (mark, SECTOR),
                  "sync", 'echo "MININOVA-MARK-WRITTEN"']
    return base64.b64encode(("\n".join(lines) + "\n").encode()).decode()


def boot(stack, name, image_id, user_data):
    r = stack.post("/v1/vms", {"name": name, "image": image_id, "flavor": "m1.tiny",
                               "user_data": user_data})
    assert r.status_code == 202, r.text
    vm = r.json()["vm"]
    stack.wait_status(vm["id"], "ACTIVE", timeout=180)
    return vm["id"]


def console(stack, vm_id):
    r = stack.get("/v1/vms/%s/console?lines=400" % vm_id)
    return r.json()["output"] if r.status_code == 200 else ""


def wait_console(stack, vm_id, needle, what):
    return wait_for(lambda: needle(console(stack, vm_id)), 240, interval=0.5, what=what)


def image(stack, image_id):
    r = stack.get("/image/v2/images/" + image_id)
    return r.json() if r.status_code == 200 else None


def wait_image(stack, image_id, status):
    def check():
        body = image(stack, image_id)
        assert body is not None, "image %s vanished" % image_id
        assert body["status"] not in ("killed", "deleted"), body
        return body if body["status"] == status else None
    return wait_for(check, 240, interval=0.5, what="image %s %s" % (image_id, status))


def idle(stack, vm_id):
    return wait_for(lambda: (lambda v: v if v["task_state"] is None else None)(
        stack.vm(vm_id)), 240, interval=0.3, what="VM %s without a task" % vm_id)


def test_a_snapshot_carries_what_the_running_vm_wrote(stack):
    mark = "MARK-%s" % uuid.uuid4().hex[:12]
    source = boot(stack, "snap-source", stack.tiny["id"], script(mark))
    clone = None
    try:
        wait_console(stack, source, lambda t: "MININOVA-MARK-WRITTEN" in t,
                     "the guest to write its mark")
        assert SEEN.search(console(stack, source)).group(1) == ""  # a fresh disk

        r = stack.action(source, {"snapshot": {"name": "snap-of-source",
                                               "metadata": {"purpose": "e2e"}}})
        queued = r.json()["image"]
        assert r.headers["Location"] == "/v1/images/%s" % queued["id"]
        assert queued["status"] in ("queued", "saving", "active")
        body = wait_image(stack, queued["id"], "active")
        after = idle(stack, source)
        assert after["status"] == "ACTIVE" and after["fault"] is None
        assert (body["instance_uuid"], body["image_type"], body["purpose"]) == (
            source, "snapshot", "e2e")
        assert body["base_image_ref"] == stack.tiny["id"]
        assert body["disk_format"] == "qcow2" and body["visibility"] == "private"
        data = stack.get("/v1/images/%s/file" % queued["id"]).content
        assert data[:4] == b"QFI\xfb" and len(data) == body["size"]
        assert hashlib.md5(data).hexdigest() == body["checksum"]
        assert hashlib.sha512(data).hexdigest() == body["os_hash_value"]
        # The source kept running through it (restored, not rebooted).
        assert console(stack, source).count("MININOVA-GUEST-BOOTED") == 1
        action = stack.get("/v1/vms/%s/actions/%s" % (source, r.headers["X-Request-Id"])
                           ).json()["action"]
        assert action["action"] == "createImage" and action["result"] == "success"
        steps = {e["event"]: e["result"] for e in action["events"]}
        assert steps["snapshot disk"] == steps["snapshot upload"] == "success", steps

        clone = boot(stack, "snap-clone", queued["id"], script())
        seen = wait_console(stack, clone, SEEN.search, "the clone to read the sector")
        assert seen.group(1) == mark
    finally:
        for vm_id in (source, clone):
            if vm_id:
                stack.delete("/v1/vms/" + vm_id)
        for vm_id in (source, clone):
            if vm_id:
                stack.wait_gone(vm_id, timeout=120)
    assert not os.listdir(os.path.join(stack.workdir, "snapshots"))


def test_a_vm_deleted_during_its_snapshot_leaves_no_half_image(stack):
    vm_id = boot(stack, "snap-deleted", stack.tiny["id"], script())
    wait_console(stack, vm_id, SEEN.search, "the guest to boot")
    r = stack.action(vm_id, {"snapshot": {"name": "snap-of-deleted"}})
    image_id = r.json()["image"]["id"]
    assert stack.delete("/v1/vms/" + vm_id).status_code == 202
    stack.wait_gone(vm_id, timeout=180)

    def settled():
        body = image(stack, image_id)
        return "gone" if body is None else (body if body["status"] == "active" else None)
    outcome = wait_for(settled, 240, interval=0.5, what="image %s active or gone" % image_id)
    if outcome != "gone":  # the upload had finished: whole and usable
        data = stack.get("/v1/images/%s/file" % image_id).content
        assert hashlib.md5(data).hexdigest() == outcome["checksum"]
        stack.delete("/image/v2/images/" + image_id)
    snapshots = os.path.join(stack.workdir, "snapshots")
    assert not os.path.isdir(snapshots) or not os.listdir(snapshots)
    store = os.path.join(stack.workdir, "images")
    if os.path.isdir(store):
        assert not [n for n in os.listdir(store) if n.startswith(image_id)
                    and (outcome == "gone" or n.endswith(".part"))]
