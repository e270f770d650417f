"""Keypairs that work: the tiny guest reads its config drive, on real QEMU.

The LibvirtDriver spawns the tiny image (deploy/build-tiny-image.sh, cached;
$MININOVA_TINY_IMAGE) on the libvirt network "mininova" with a config drive
carrying an ed25519 public key made here with ssh-keygen, server metadata, a
host name and a user_data script. Then OpenSSH's client logs in as root with
the private key (no password exists) and finds the host name of meta_data.json
and what user_data wrote; with a fixed IP the guest must have configured that
address from network_data.json, without one it takes a DHCP lease as before.
A VM without a config drive still boots, takes its lease and lets nobody in.

Run: python -m pytest -q -s tests/functional/test_configdrive_guest.py
"""
import ipaddress
import os
import random
import re
import shutil
import subprocess
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from oslo_config import cfg

from common import config, exception
from mininova_lab.waiting import wait_for
from nova_compute.virt import configdrive
from nova_compute.virt import driver as virt_driver
from nova_compute.virt.libvirt.driver import LibvirtDriver
from tests import prerequisites

pytestmark = pytest.mark.real_services("libvirt")

REPO = Path(__file__).resolve().parents[2]
URI = "qemu:///system"
NETWORK = "mininova"
PREFIX = "192.168.123"
IMAGE = os.environ.get("MININOVA_TINY_IMAGE", "/var/cache/mininova/tiny.qcow2")
UP = re.compile(r"MININOVA-GUEST-UP ip=(\d+\.\d+\.\d+\.\d+)")
USERDATA_DONE = re.compile(r"MININOVA-USERDATA-DONE rc=(\d+)")


def _run(cmd, timeout):
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, "%s failed (%d):\n%s%s" % (
        " ".join(map(str, cmd)), out.returncode, out.stdout, out.stderr)
    return out


@pytest.fixture(scope="module")
def tiny_image():
    _run(["bash", str(REPO / "deploy/build-tiny-image.sh"), IMAGE], timeout=900)
    return os.path.abspath(IMAGE)


@pytest.fixture(scope="module")
def network():
    _run(["bash", str(REPO / "deploy/setup-network.sh")], timeout=120)
    return NETWORK


@pytest.fixture
def ssh_tools():
    for tool in ("ssh", "ssh-keygen"):
        prerequisites.require(shutil.which(tool), "%s (apt: openssh-client; "
                              "deploy/install-test-tools.sh installs it)" % tool)


@pytest.fixture
def driver(tmp_path, network):
    conf = cfg.ConfigOpts()
    config.register_opts(conf)
    conf([], project="mininova", default_config_files=[])
    conf.set_override("instances_path", str(tmp_path / "instances"), group="compute")
    conf.set_override("network_name", network, group="compute")
    conf.set_override("connection_uri", URI, group="libvirt")
    drv = LibvirtDriver(conf)
    try:
        drv.init_host("cdtest-" + uuid.uuid4().hex[:12])
    except exception.HypervisorError as exc:
        prerequisites.require(False, "libvirtd at %s is not reachable: %s" % (URI, exc.message))
    yield drv
    for inst in drv.list_instances():
        drv.destroy(inst["id"])
    drv.cleanup_host()


@pytest.fixture
def keypair(tmp_path, ssh_tools):
    key = tmp_path / "id_ed25519"
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "cdtest", "-f", str(key)],
         timeout=30)
    return key, key.with_suffix(".pub").read_text().strip()


def random_mac():
    return "52:54:00:%02x:%02x:%02x" % tuple(random.randrange(256) for _ in range(3))


def free_static_address():
    """An address of the network outside its DHCP range (.10-.250) that nothing
    answers on now."""
    candidates = ["%s.%d" % (PREFIX, n) for n in (*range(2, 10), *range(251, 255))]
    random.shuffle(candidates)
    for ip in candidates:
        if subprocess.run(["ping", "-c1", "-W1", ip], capture_output=True,
                          timeout=10).returncode != 0:
            return ip
    pytest.fail("no free static address on %s.0/24" % PREFIX)


def spec(config_drive):
    return virt_driver.InstanceSpec(
        id=str(uuid.uuid4()), name="cd test VM", vcpus=1, memory_mb=192, root_gb=0,
        image_id="tiny", project_id="proj-cd", mac_address=random_mac(),
        config_drive=config_drive)


def console(drv, inst):
    try:
        with open(os.path.join(drv.instances_path, inst.id, "console.log"),
                  errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def wait_console(drv, inst, pattern, what, timeout=180):
    def seen():
        return pattern.search(console(drv, inst))
    try:
        return wait_for(seen, timeout, interval=0.2, what=what)
    except AssertionError:
        print(console(drv, inst))
        raise


def ssh(ip, key, tmp_path, command):
    return subprocess.run(
        ["ssh", "-F", "/dev/null", "-i", str(key), "-o", "IdentitiesOnly=yes",
         "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=%s" % (tmp_path / "known_hosts"),
         "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR", "root@%s" % ip, command],
        capture_output=True, text=True, timeout=90)


def cdrom_sources(drv, inst):
    xml = subprocess.run(["virsh", "-c", URI, "dumpxml", "mininova-" + inst.id],
                         capture_output=True, text=True, timeout=30).stdout
    return [(d.find("source").get("file"), d.find("readonly") is not None)
            for d in ET.fromstring(xml).iterfind("devices/disk[@device='cdrom']")]


USER_DATA = b"""#!/bin/sh
echo "user_data ran as $(id -u) on $(hostname)" > /root/user-data-ran
echo written
"""


@pytest.mark.parametrize("addressing", ["static", "dhcp"])
def test_guest_with_config_drive_takes_its_key_name_network_and_user_data(
        addressing, tiny_image, driver, keypair, tmp_path):
    key, public = keypair
    hostname = "cd-" + uuid.uuid4().hex[:8]
    fixed = None
    if addressing == "static":
        fixed = configdrive.FixedIP("%s/24" % free_static_address(), gateway=PREFIX + ".1",
                                    dns=(PREFIX + ".1",))
    inst = spec(configdrive.ConfigDrive(
        hostname=hostname, public_keys=(("cdtest", public),), metadata={"role": "web"},
        user_data=USER_DATA, fixed_ip=fixed))
    driver.spawn(inst, tiny_image)
    drive = os.path.join(driver.instances_path, inst.id, "disk.config")
    assert cdrom_sources(driver, inst) == [(drive, True)]

    ip = wait_console(driver, inst, UP, "the guest's address on its console").group(1)
    if fixed:
        assert ip == str(fixed.interface.ip)
        assert "static %s/24 on eth0 from the config drive" % ip in console(driver, inst)
    else:
        assert ipaddress.ip_address(ip) in ipaddress.ip_network(PREFIX + ".0/24")
        assert "from the config drive" not in console(driver, inst)
    done = wait_console(driver, inst, USERDATA_DONE, "user_data to finish")
    assert done.group(1) == "0"
    assert "user_data: written" in console(driver, inst)

    out = wait_for(lambda: (lambda r: r if r.returncode == 0 else None)(
        ssh(ip, key, tmp_path, "hostname; cat /root/user-data-ran; ip -4 -o addr show eth0")),
        120, interval=1, what="an SSH login with the private key")
    lines = out.stdout.splitlines()
    assert lines[0] == hostname
    assert lines[1] == "user_data ran as 0 on %s" % hostname
    assert " %s/24 " % ip in lines[2]
    print("\n[%s] console:\n%s" % (addressing, console(driver, inst)))

    driver.destroy(inst.id)
    assert not os.path.exists(drive)


def test_guest_without_config_drive_boots_as_before_and_lets_no_key_in(
        tiny_image, driver, keypair, tmp_path):
    key, _public = keypair
    inst = spec(None)
    driver.spawn(inst, tiny_image)
    assert cdrom_sources(driver, inst) == []
    ip = wait_console(driver, inst, UP, "a DHCP lease on the console").group(1)
    text = console(driver, inst)
    assert "MININOVA-GUEST-BOOTED" in text and "init: no config drive" in text
    assert "hostname mininova" in text
    wait_for(lambda: subprocess.run(["ping", "-c1", "-W2", ip], capture_output=True,
                                    timeout=10).returncode == 0, 60, what="ping %s" % ip)
    # dropbear runs, but with no authorized key nobody gets in.
    wait_for(lambda: "dropbear listening" in console(driver, inst), 60, what="dropbear")
    denied = ssh(ip, key, tmp_path, "true")
    assert denied.returncode == 255 and "Permission denied" in denied.stderr, denied
    assert not os.path.exists(os.path.join(driver.instances_path, inst.id, "disk.config"))
