"""Config drives as cloud-init itself reads them.

mininova's config drive (nova_compute/virt/configdrive.py, through genisoimage)
is read back by tools that share no code with it: isoinfo shows the volume
descriptors, xorriso extracts the tree with its Rock Ridge names, and
cloud-init's own ConfigDrive datasource (Debian's cloud-init package, unpacked
by deploy/install-test-tools.sh; its Python dependencies are in the venv's test
extras) reads that tree: read_config_drive() for meta data, user data and
vendor data, convert_net_json() for the network configuration it would write,
normalize_pubkey_data() for the SSH keys it would install. It runs in a
subprocess, so nothing of cloud-init is imported into the test process.
"""
import base64
import filecmp
import json
import os
import shutil
import subprocess
import sys
import uuid

import pytest

from nova_compute.virt import configdrive
from nova_compute.virt import driver as virt_driver
from tests import prerequisites

pytestmark = pytest.mark.real_services()

CLOUD_INIT = os.path.join(os.environ.get("MININOVA_CLOUD_INIT_DIR",
                                         "/var/cache/mininova/cloud-init"),
                          "usr/lib/python3/dist-packages")
MAC = "52:54:00:ab:cd:ef"
KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBAhLxAKy0sPEVzKsJ0d7x5r5l8kqF3D3Oq7m8Yw0b6Q "
       "alice@example")

READER = r"""
import base64, json, sys
from cloudinit.sources import DataSourceConfigDrive, normalize_pubkey_data
from cloudinit.sources.helpers import openstack

tree, mac = sys.argv[1], sys.argv[2]
found = DataSourceConfigDrive.read_config_drive(tree)
md = found["metadata"]
md["random_seed"] = len(md.get("random_seed") or b"")  # decoded by cloud-init
print(json.dumps({
    "version": found["version"],
    "selected": openstack.ConfigDriveReader(tree)._find_working_version(),
    "metadata": md,
    "userdata": base64.b64encode(found["userdata"] or b"").decode(),
    "vendordata": found.get("vendordata"),
    "vendordata2": found.get("vendordata2"),
    "network": openstack.convert_net_json(found["networkdata"], known_macs={mac: "eth0"}),
    "keys": normalize_pubkey_data(md.get("public_keys")),
}))
"""


@pytest.fixture
def tools():
    for tool, why in (("genisoimage", "deploy/install-host.sh"),
                      ("isoinfo", "deploy/install-host.sh (package genisoimage)"),
                      ("xorriso", "deploy/install-test-tools.sh")):
        prerequisites.require(shutil.which(tool), "%s (installed by %s)" % (tool, why))
    prerequisites.require(
        os.path.isfile(os.path.join(CLOUD_INIT, "cloudinit/sources/DataSourceConfigDrive.py")),
        "cloud-init's modules in %s (deploy/install-test-tools.sh unpacks them)" % CLOUD_INIT)


def make_drive(tmp_path, drive, mac=MAC):
    spec = virt_driver.InstanceSpec(
        id=str(uuid.uuid4()), name="Web Server #1", vcpus=1, memory_mb=128, root_gb=1,
        image_id="tiny", project_id="proj-ci", mac_address=mac, config_drive=drive)
    iso = tmp_path / "disk.config"
    configdrive.make_config_drive(spec, str(iso))
    return spec, iso


def extract(iso, tmp_path):
    tree = tmp_path / "tree"
    out = subprocess.run(["xorriso", "-osirrox", "on", "-indev", str(iso), "-extract", "/",
                          str(tree)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return tree


def cloud_init_reads(tree, mac=MAC):
    env = dict(os.environ, PYTHONPATH=CLOUD_INIT)
    out = subprocess.run([sys.executable, "-c", READER, str(tree), mac], capture_output=True,
                         text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_cloud_init_reads_keys_metadata_user_data_and_static_network(tools, tmp_path):
    user_data = b"#!/bin/sh\necho hello from user_data\n"
    drive = configdrive.ConfigDrive(
        hostname="web-server-1", public_keys=(("alice", KEY),),
        metadata={"role": "web", "tier": "front"}, user_data=user_data,
        fixed_ip=configdrive.FixedIP("10.20.30.44/22", gateway="10.20.28.1",
                                     dns=("10.20.28.2", "10.20.28.3")),
        availability_zone="zone-a", launch_index=2)
    spec, iso = make_drive(tmp_path, drive)

    descriptors = subprocess.run(["isoinfo", "-d", "-i", str(iso)], capture_output=True,
                                 text=True, timeout=30).stdout
    assert "Volume id: config-2" in descriptors
    assert "Joliet" in descriptors and "Rock Ridge" in descriptors

    tree = extract(iso, tmp_path)
    dated = tree / "openstack" / "2018-08-27"
    latest = tree / "openstack" / "latest"
    names = ["meta_data.json", "network_data.json", "user_data", "vendor_data.json",
             "vendor_data2.json"]
    assert sorted(os.listdir(latest)) == names
    match, mismatch, errors = filecmp.cmpfiles(dated, latest, names, shallow=False)
    assert (mismatch, errors) == ([], []), "the versions differ"
    assert (latest / "user_data").read_bytes() == user_data

    found = cloud_init_reads(tree)
    assert found["version"] == 2 and found["selected"] == "2018-08-27"
    md = found["metadata"]
    assert md["uuid"] == md["instance-id"] == spec.id
    assert md["name"] == "Web Server #1"
    assert md["hostname"] == md["local-hostname"] == "web-server-1"
    assert md["public_keys"] == {"alice": KEY}
    assert md["keys"] == [{"name": "alice", "type": "ssh", "data": KEY}]
    assert md["meta"] == {"role": "web", "tier": "front"}
    assert md["availability_zone"] == "zone-a"
    assert md["project_id"] == "proj-ci"
    assert md["launch_index"] == 2
    assert md["devices"] == []
    assert md["random_seed"] == 512
    assert found["keys"] == [KEY]
    assert base64.b64decode(found["userdata"]) == user_data
    assert found["vendordata"] == {} and found["vendordata2"] == {}

    net = found["network"]
    assert net["version"] == 1
    physical = [c for c in net["config"] if c["type"] == "physical"]
    assert len(physical) == 1
    assert physical[0]["name"] == "eth0" and physical[0]["mac_address"] == MAC
    (subnet,) = physical[0]["subnets"]
    assert subnet["type"] == "static"
    assert subnet["address"] == "10.20.30.44" and subnet["netmask"] == "255.255.252.0"
    assert [r["gateway"] for r in subnet["routes"] if r["network"] == "0.0.0.0"] == ["10.20.28.1"]
    nameservers = [c["address"] for c in net["config"] if c["type"] == "nameserver"]
    assert nameservers == ["10.20.28.2", "10.20.28.3"]


def test_cloud_init_reads_dhcp_network_and_no_user_data(tools, tmp_path):
    drive = configdrive.ConfigDrive(hostname="plain")
    spec, iso = make_drive(tmp_path, drive)
    tree = extract(iso, tmp_path)
    assert "user_data" not in os.listdir(tree / "openstack" / "latest")

    found = cloud_init_reads(tree)
    md = found["metadata"]
    assert md["instance-id"] == spec.id and md["local-hostname"] == "plain"
    assert md["public_keys"] == {} and md["keys"] == [] and md["meta"] == {}
    assert md["availability_zone"] == "nova" and md["launch_index"] == 0
    assert found["keys"] == []
    assert found["userdata"] == ""
    physical = [c for c in found["network"]["config"] if c["type"] == "physical"]
    assert [(p["mac_address"], p["name"], p["subnets"]) for p in physical] == [
        (MAC, "eth0", [{"type": "dhcp4"}])]
