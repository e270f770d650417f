"""End to end with real guests: the tiny image boots, takes a DHCP lease, is
pingable, shows its console; images reach compute hosts over HTTP, verified."""
import os
import re
import subprocess
import time

import pytest

from mininova_lab.stack import domain_names
from mininova_lab.waiting import wait_for

pytestmark = pytest.mark.real_services("rabbitmq", "postgresql", "libvirt", "http")

MARKER = re.compile(r"MININOVA-GUEST-UP ip=(\d+\.\d+\.\d+\.\d+)")


def boot(stack, name):
    t0 = time.monotonic()
    r = stack.post("/v1/vms", {"name": name, "image": "tiny", "flavor": "m1.tiny"})
    assert r.status_code == 202, r.text
    vm = stack.wait_status(r.json()["vm"]["id"], "ACTIVE", timeout=60)

    def up():
        console = stack.get("/v1/vms/%s/console?lines=50" % vm["id"]).json()["output"]
        shown = stack.vm(vm["id"])
        ip = shown["addresses"][0]["ip"]
        match = MARKER.search(console)
        return (shown, match.group(1)) if match and ip else None
    shown, console_ip = wait_for(up, 120, interval=0.2, what="%s to boot and lease an IP" % name)
    shown["boot_to_ip_s"] = time.monotonic() - t0
    assert shown["addresses"][0]["ip"] == console_ip
    assert re.match(r"^52:54:00(:[0-9a-f]{2}){3}$", shown["addresses"][0]["mac"])
    return shown


def ping(ip):
    return subprocess.run(["ping", "-c1", "-W2", ip], capture_output=True).returncode == 0


@pytest.fixture
def cleanup(stack):
    ids = []
    yield ids
    for i in ids:
        stack.delete("/v1/vms/" + i)
    for i in ids:
        stack.wait_gone(i)


def test_tiny_guests_boot_get_ips_and_answer_ping(stack, cleanup):
    a = boot(stack, "guest-a")
    cleanup.append(a["id"])
    b = boot(stack, "guest-b")
    cleanup.append(b["id"])
    print("\nPOST -> console marker + IP in the API: %.1f s, %.1f s"
          % (a["boot_to_ip_s"], b["boot_to_ip_s"]))
    ips = {a["addresses"][0]["ip"], b["addresses"][0]["ip"]}
    assert len(ips) == 2
    for ip in ips:
        assert wait_for(lambda: ping(ip), 20, what="ping %s" % ip)

    console = stack.get("/v1/vms/guest-a/console?lines=3").json()["output"]
    assert 0 < len(console.splitlines()) <= 3
    assert stack.get("/v1/vms/guest-a/console?lines=0").status_code == 400
    assert stack.get("/v1/vms/guest-a/console?lines=x").status_code == 400

    # Delete removes the domain, the overlay and the console log.
    instance_dir = os.path.join(stack.instances_path, a["id"])
    assert os.path.exists(os.path.join(instance_dir, "console.log"))
    stack.delete("/v1/vms/" + a["id"])
    stack.wait_gone(a["id"])
    assert not os.path.exists(instance_dir)
    assert "mininova-" + a["id"] not in domain_names()


def test_console_survives_a_restart(stack, cleanup):
    vm = boot(stack, "guest-restart")
    cleanup.append(vm["id"])
    stack.action(vm["id"], {"stop": {}})  # ACPI: the guest's acpid powers it off
    stack.wait_status(vm["id"], "SHUTOFF", timeout=30)
    stack.action(vm["id"], {"start": {}})
    stack.wait_status(vm["id"], "ACTIVE")
    wait_for(lambda: len(MARKER.findall(stack.get(
        "/v1/vms/%s/console?lines=1000" % vm["id"]).json()["output"])) >= 2, 120, interval=0.3,
        what="a second boot marker after the first one")


def test_soft_reboot_stays_active(stack, cleanup):
    vm = boot(stack, "guest-reboot")
    cleanup.append(vm["id"])
    stack.action(vm["id"], {"reboot": {"type": "soft"}})
    stack.wait_status(vm["id"], "ACTIVE", timeout=60)
    # No stray SHUTOFF afterwards either, once events have settled.
    wait_for(lambda: len(MARKER.findall(stack.get(
        "/v1/vms/%s/console?lines=1000" % vm["id"]).json()["output"])) >= 2, 120, interval=0.3,
        what="the guest to come back after the reboot")
    assert stack.vm(vm["id"])["status"] == "ACTIVE"


def test_image_reaches_a_host_with_an_empty_cache_and_corruption_is_refetched(stack, cleanup):
    workdir = stack.start_extra_compute("host2-" + stack.tag)
    host2 = "host2-" + stack.tag
    cache = os.path.join(workdir, "_base")
    stack.set_disabled(stack.host, True)
    try:
        vm = boot(stack, "guest-far")
        cleanup.append(vm["id"])
        assert vm["host"] == host2
        cached = os.path.join(cache, stack.tiny["id"])
        assert os.path.exists(cached)

        # Corrupt the cached base: the next build must notice and fetch again.
        with open(cached, "r+b") as f:
            f.seek(4096)
            f.write(b"corrupted!")
        vm2 = boot(stack, "guest-far-2")
        cleanup.append(vm2["id"])
        assert vm2["host"] == host2
        with open(os.path.join(stack.logs, "compute-%s.log" % host2)) as f:
            assert "is corrupt" in f.read()
    finally:
        stack.set_disabled(stack.host, False)
        for i in cleanup:  # gone before host2 goes
            stack.delete("/v1/vms/" + i)
        for i in cleanup:
            stack.wait_gone(i)
        cleanup.clear()
        stack.set_disabled(host2, True)  # later tests must not land there
        stack.stop_daemon("compute-" + host2)
