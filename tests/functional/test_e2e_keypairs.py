"""Keypairs that work, end to end on the real stack with a real guest: a
keypair created through Nova's os-keypairs (the API generates it and returns
the private key once, as `openstack keypair create` uses it), a VM created
with it and a user_data shell script; the tiny guest installs the public key
for dropbear and runs the script, and OpenSSH's client logs in as root with
the private key at the address the API showed at ACTIVE and reads what the
script wrote."""
import base64
import os
import re
import shutil
import subprocess
import uuid

import pytest

from mininova_lab.waiting import wait_for
from tests import prerequisites

pytestmark = pytest.mark.real_services("rabbitmq", "postgresql", "libvirt", "http")

COMPUTE = "/compute/v2.1"
USER_DATA = b"""#!/bin/sh
echo "user_data of $(hostname) ran as uid $(id -u)" > /root/user-data-out
echo done
"""
USERDATA_DONE = re.compile(r"MININOVA-USERDATA-DONE rc=(\d+)")


def ssh(ip, key, tmp_path, command):
    return subprocess.run(
        ["ssh", "-F", "/dev/null", "-i", str(key), "-o", "IdentitiesOnly=yes",
         "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=%s" % (tmp_path / "known_hosts"),
         "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR", "root@%s" % ip, command],
        capture_output=True, text=True, timeout=90)


@pytest.fixture
def keypair(stack, tmp_path):
    """A keypair the API generated: (name, path of its private key)."""
    prerequisites.require(shutil.which("ssh"), "ssh (apt: openssh-client; "
                          "deploy/install-test-tools.sh installs it)")
    name = "e2e-" + uuid.uuid4().hex[:8]
    r = stack.post(COMPUTE + "/os-keypairs", {"keypair": {"name": name}})
    assert r.status_code == 200, r.text
    key = tmp_path / "id_generated"
    key.write_text(r.json()["keypair"]["private_key"])
    os.chmod(key, 0o600)
    yield name, key
    stack.delete(COMPUTE + "/os-keypairs/" + name)


def test_ssh_into_a_guest_with_the_keypair_and_see_user_data(stack, keypair, tmp_path):
    key_name, key = keypair
    r = stack.post("/v1/vms", {"name": "Key_Guest_1", "image": "tiny", "flavor": "m1.tiny",
                               "key_name": key_name,
                               "user_data": base64.b64encode(USER_DATA).decode()})
    assert r.status_code == 202, r.text
    vm_id = r.json()["vm"]["id"]
    try:
        vm = stack.wait_status(vm_id, "ACTIVE", timeout=120)
        ip = vm["addresses"][0]["ip"]
        assert ip  # known at ACTIVE

        def console():
            return stack.get("/v1/vms/%s/console?lines=300" % vm_id).json()["output"]
        done = wait_for(lambda: USERDATA_DONE.search(console()), 180, interval=0.5,
                        what="user_data to run")
        assert done.group(1) == "0"

        out = wait_for(lambda: (lambda p: p if p.returncode == 0 else None)(
            ssh(ip, key, tmp_path, "hostname; cat /root/user-data-out")),
            120, interval=1, what="an SSH login to %s with the keypair's private key" % ip)
        assert out.stdout.splitlines() == ["key-guest-1",
                                           "user_data of key-guest-1 ran as uid 0"]
        # Nobody else gets in: another key is refused.
        other = tmp_path / "id_other"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)],
                       check=True, timeout=30)
        assert ssh(ip, other, tmp_path, "true").returncode != 0
    finally:
        stack.delete("/v1/vms/" + vm_id)
        stack.wait_gone(vm_id, timeout=120)
