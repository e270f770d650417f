"""A VM's keypair, metadata and user_data reach its config drive through the
real stack (API on waitress, PostgreSQL, RabbitMQ, the four daemons; the
compute on the libvirt driver over libvirt's test driver, which writes the
drive's files as JSON): POST /v1/vms with key_name, metadata and user_data,
the build cast on by the conductor, and the compute reading them back from
the conductor's instance_get."""
import base64
import json
import os

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from mininova_lab.stack import Stack, qemu_img_create

pytestmark = pytest.mark.real_services("rabbitmq", "postgresql", "http")

KEY = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
    serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode() + " e2e"
USER_DATA = b"#!/bin/sh\necho from user_data\n"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("fields"), compute_driver="fake-libvirt", network="",
              extra_conf="connection_uri = test:///default\n")
    try:
        s.start()
        base = os.path.join(s.workdir, "blank.qcow2")
        qemu_img_create(base, "1G")
        s.add_image("blank", base)
        yield s
    finally:
        try:
            s.delete_all_vms()
        finally:
            s.stop()


def test_config_drive_has_the_keypair_metadata_and_user_data(stack):
    r = stack.post("/compute/v2.1/os-keypairs", {"keypair": {"name": "e2e", "public_key": KEY}})
    assert r.status_code == 200, r.text
    r = stack.post("/v1/vms", {"name": "cd1", "image": "blank", "flavor": "m1.tiny",
                               "key_name": "e2e", "metadata": {"role": "db"},
                               "user_data": base64.b64encode(USER_DATA).decode()})
    assert r.status_code == 202, r.text
    vm = stack.wait_status(r.json()["vm"]["id"], "ACTIVE", timeout=120)
    assert (vm["key_name"], vm["metadata"]) == ("e2e", {"role": "db"})
    with open(os.path.join(stack.instances_path, vm["id"], "disk.config")) as f:
        files = json.load(f)  # the test driver's stand-in for the ISO: its files
    meta = json.loads(files["openstack/latest/meta_data.json"])
    assert (meta["uuid"], meta["public_keys"], meta["meta"]) == (vm["id"], {"e2e": KEY},
                                                                  {"role": "db"})
    assert files["openstack/latest/user_data"] == USER_DATA.decode()
