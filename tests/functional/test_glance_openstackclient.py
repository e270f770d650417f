"""The Glance v2 subset on the real stack (the API on waitress, PostgreSQL,
RabbitMQ, libvirt), driven by the unmodified ``openstack`` CLI and
openstacksdk as a project member: ``image create --file`` (POST, PUT of the
file, GET), list, show, save (the same bytes back), delete; a VM boots from
the image the member uploaded; the SDK pages through the list and uploads
raw data."""
import hashlib
import json
import os
import subprocess
import sys

import openstack
import pytest

from mininova_lab.waiting import wait_for

pytestmark = pytest.mark.real_services("rabbitmq", "postgresql", "libvirt", "http")

PASSWORD = "glance pw"
OPENSTACK = os.path.join(os.path.dirname(sys.executable), "openstack")


@pytest.fixture(scope="module")
def member(stack):
    """A member of project ``glance`` with a password; the CLI's environment."""
    try:
        stack.manage("project", "create", "glance")
    except subprocess.CalledProcessError:
        pass  # made by an earlier module
    stack.manage("user", "create", "gl-member", "--project", "glance", "--role", "member",
                 "--password-stdin", stdin=PASSWORD + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env.update(OS_AUTH_URL=stack.url + "/identity/v3", OS_USERNAME="gl-member",
               OS_PASSWORD=PASSWORD, OS_PROJECT_NAME="glance", OS_USER_DOMAIN_NAME="Default",
               OS_PROJECT_DOMAIN_NAME="Default", OS_IDENTITY_API_VERSION="3",
               OS_INTERFACE="public", OS_REGION_NAME="RegionOne")
    return env


def cli(env, *args):
    done = subprocess.run([OPENSTACK, *args], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, "openstack %s: %s" % (" ".join(args), done.stderr)
    return done.stdout


def cli_json(env, *args):
    return json.loads(cli(env, *args, "-f", "json"))


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_image_lifecycle_with_the_openstack_cli_and_a_vm_from_it(stack, member, tmp_path):
    tiny = os.environ.get("MININOVA_TINY_IMAGE", "/var/cache/mininova/tiny.qcow2")
    created = cli_json(member, "image", "create", "--file", tiny, "--disk-format", "qcow2",
                       "--container-format", "bare", "--property", "os_distro=tiny",
                       "gl-tiny")
    image_id = created["id"]
    shown = cli_json(member, "image", "show", "gl-tiny")
    assert shown["id"] == image_id and shown["status"] == "active"
    assert shown["size"] == os.path.getsize(tiny) and shown["visibility"] == "shared"
    with open(tiny, "rb") as f:
        data = f.read()
    assert shown["checksum"] == hashlib.md5(data).hexdigest()
    token = cli_json(member, "token", "issue")
    assert shown["owner"] == token["project_id"]
    listed = cli_json(member, "image", "list")
    assert image_id in [i["ID"] for i in listed]
    # image set/unset: a JSON patch in Glance's media type.
    cli(member, "image", "set", "--min-ram", "64", "--property", "color=blue", "--tag", "t1",
        image_id)
    shown = cli_json(member, "image", "show", image_id)
    assert (shown["min_ram"], shown["properties"]["color"], shown["tags"]) == (64, "blue",
                                                                                ["t1"])
    cli(member, "image", "unset", "--property", "color", image_id)
    assert "color" not in cli_json(member, "image", "show", image_id)["properties"]
    assert [i["ID"] for i in cli_json(member, "image", "list", "--tag", "t1")] == [image_id]
    saved = tmp_path / "saved.qcow2"
    cli(member, "image", "save", "--file", str(saved), image_id)
    assert saved.read_bytes() == data

    # A VM of the member's project boots from it (through /v1, with a
    # Keystone token of the same user).
    as_member = {"X-Auth-Token": token["id"]}
    r = stack.http.post(stack.url + "/v1/vms", json={"name": "from-glance", "image": image_id,
                                                      "flavor": "m1.tiny"},
                        headers=as_member, timeout=10)
    assert r.status_code == 202, r.text
    vm_url = stack.url + "/v1/vms/" + r.json()["vm"]["id"]

    def status():
        vm = stack.http.get(vm_url, headers=as_member, timeout=10).json()["vm"]
        assert vm["status"] != "ERROR", vm["fault"]
        return vm["status"]
    try:
        wait_for(lambda: status() == "ACTIVE", 120, what="the VM to be ACTIVE")
        cached = os.path.join(stack.cache_path, image_id)
        assert sha256(cached) == hashlib.sha256(data).hexdigest()
        # Deleting an image in use is allowed; the host keeps its cached base.
        cli(member, "image", "delete", image_id)
        assert image_id not in [i["ID"] for i in cli_json(member, "image", "list")]
        assert os.path.exists(cached) and status() == "ACTIVE"
    finally:
        stack.http.delete(vm_url, headers=as_member, timeout=10)
        wait_for(lambda: stack.http.get(vm_url, headers=as_member, timeout=10).status_code
                 == 404, 60, what="the VM to be gone")


def test_openstacksdk_uploads_raw_data_and_pages(stack, member, tmp_path):
    conn = openstack.connect(
        auth_url=member["OS_AUTH_URL"], username="gl-member", password=PASSWORD,
        project_name="glance", user_domain_name="Default", project_domain_name="Default",
        region_name="RegionOne", interface="public")
    try:
        raw = tmp_path / "random.raw"
        raw.write_bytes(os.urandom(4096).replace(b"QFI\xfb", b"abcd"))
        made = [conn.image.create_image(name="sdk-%d" % i, filename=str(raw),
                                        disk_format="raw", container_format="bare",
                                        min_ram=64) for i in range(3)]
        for image in made:
            wait_for(lambda: conn.image.get_image(image.id).status == "active", 30,
                     what="image %s to be active" % image.name)
            assert conn.image.get_image(image.id).size == 4096
        paged = [i.id for i in conn.image.images(limit=1, owner=made[0].owner)]
        assert set(i.id for i in made) <= set(paged)
        body = b"".join(conn.image.download_image(made[0].id, stream=True)
                        .iter_content(65536))
        assert body == raw.read_bytes()
        for image in made:
            conn.image.delete_image(image.id)
        assert not [i for i in conn.image.images() if i.name.startswith("sdk-")]
    finally:
        conn.close()
