"""The unmodified ``openstack`` CLI (python-openstackclient, openstacksdk)
on a real stack (API on waitress, PostgreSQL, RabbitMQ, a compute on the
fake driver): flavors, keypairs, server groups, quotas and limits as a
member, hypervisors, compute services and availability zones, all at 2.1 through
the real version discovery and microversion negotiation."""
import json
import os
import subprocess
import sys

import pytest

from mininova_lab.stack import Stack
from mininova_lab.waiting import wait_for

pytestmark = pytest.mark.real_services("rabbitmq", "postgresql", "http")

OPENSTACK = os.path.join(os.path.dirname(sys.executable), "openstack")
PASSWORD = "cli secret"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("osc"), compute_driver="fake")
    try:
        s.start()
        s.manage("project", "create", "demo")
        for name, project, role in (("osc-admin", "admin", "admin"),
                                    ("osc-demo", "demo", "member")):
            s.manage("user", "create", name, "--project", project, "--role", role,
                     "--password-stdin", stdin=PASSWORD + "\n")
        clouds = {"clouds": {
            cloud: {"auth": {"auth_url": s.url + "/identity/v3", "username": user,
                             "password": PASSWORD, "project_name": project,
                             "user_domain_name": "Default", "project_domain_name": "Default"},
                    "region_name": "RegionOne", "identity_api_version": 3}
            for cloud, user, project in (("admin", "osc-admin", "admin"),
                                         ("demo", "osc-demo", "demo"))}}
        with open(os.path.join(s.workdir, "clouds.yaml"), "w") as f:
            json.dump(clouds, f)   # YAML reads JSON
        yield s
    finally:
        s.stop()


def osc(stack, cloud, *args, check=True):
    """``openstack --os-cloud CLOUD ARGS``; its parsed JSON output when it has
    one (``-f json`` is added to commands that show something)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env["OS_CLIENT_CONFIG_FILE"] = os.path.join(stack.workdir, "clouds.yaml")
    result = subprocess.run([OPENSTACK, "--os-cloud", cloud, *args], env=env,
                            capture_output=True, text=True, timeout=120)
    if check:
        assert result.returncode == 0, (args, result.stdout, result.stderr)
    if check and "-f" in args:
        return json.loads(result.stdout)
    return result


def test_flavors_as_admin_and_member(stack):
    created = osc(stack, "admin", "flavor", "create", "--ram", "256", "--disk", "1",
                  "--vcpus", "1", "--property", "hw:cpu_policy=shared", "osc.tiny",
                  "-f", "json")
    assert created["name"] == "osc.tiny" and created["ram"] == 256
    names = [f["Name"] for f in osc(stack, "demo", "flavor", "list", "-f", "json")]
    assert "osc.tiny" in names and "m1.tiny" in names
    shown = osc(stack, "demo", "flavor", "show", "osc.tiny", "-f", "json")
    assert shown["id"] == created["id"] and shown["vcpus"] == 1
    assert shown["properties"] == {"hw:cpu_policy": "shared"}
    refused = osc(stack, "demo", "flavor", "delete", "osc.tiny", check=False)
    assert refused.returncode != 0
    osc(stack, "admin", "flavor", "delete", "osc.tiny")
    names = [f["Name"] for f in osc(stack, "demo", "flavor", "list", "-f", "json")]
    assert "osc.tiny" not in names


def test_a_private_flavor_shared_with_a_project(stack):
    osc(stack, "admin", "flavor", "create", "--ram", "128", "--disk", "1", "--vcpus", "1",
        "--private", "--project", "demo", "osc.private")
    shown = osc(stack, "demo", "flavor", "show", "osc.private", "-f", "json")
    assert shown["os-flavor-access:is_public"] is False
    osc(stack, "admin", "flavor", "unset", "--project", "demo", "osc.private")
    assert osc(stack, "demo", "flavor", "show", "osc.private", check=False).returncode != 0
    osc(stack, "admin", "flavor", "delete", "osc.private")


def test_keypairs(stack, tmp_path):
    private = tmp_path / "kp1"
    osc(stack, "demo", "keypair", "create", "--private-key", str(private), "kp1")
    assert private.read_text().startswith("-----BEGIN")
    listed = osc(stack, "demo", "keypair", "list", "-f", "json")
    assert [k["Name"] for k in listed] == ["kp1"]
    shown = osc(stack, "demo", "keypair", "show", "kp1", "-f", "json")
    assert shown["fingerprint"] == listed[0]["Fingerprint"]
    assert osc(stack, "admin", "keypair", "list", "-f", "json") == []   # another user's
    osc(stack, "demo", "keypair", "delete", "kp1")
    assert osc(stack, "demo", "keypair", "list", "-f", "json") == []


def test_server_groups(stack):
    group = osc(stack, "demo", "server", "group", "create", "--policy", "anti-affinity",
                "sg1", "-f", "json")
    # OSC names the column after what the microversion has: "policies" at 2.1.
    assert group["name"] == "sg1" and "anti-affinity" in str(group.get("policies"))
    listed = osc(stack, "demo", "server", "group", "list", "-f", "json")
    assert [g["ID"] for g in listed] == [group["id"]]
    osc(stack, "demo", "server", "group", "delete", "sg1")
    assert osc(stack, "demo", "server", "group", "list", "-f", "json") == []


def test_quota_and_limits(stack):
    quota = osc(stack, "demo", "quota", "show", "-f", "json")
    by_resource = {row["Resource"]: row["Limit"] for row in quota} if isinstance(
        quota, list) else quota
    assert by_resource["instances"] == 10 and by_resource["cores"] == 20
    limits = osc(stack, "demo", "limits", "show", "--absolute", "-f", "json")
    by_name = {row["Name"]: row["Value"] for row in limits}   # the SDK's attribute names
    assert (by_name["instances"], by_name["instances_used"], by_name["server_meta"]) == (
        10, 0, 128)


def test_hypervisors_and_compute_services(stack):
    hypervisors = osc(stack, "admin", "hypervisor", "list", "-f", "json")
    assert [h["Hypervisor Hostname"] for h in hypervisors] == [stack.host]
    assert osc(stack, "demo", "hypervisor", "list", check=False).returncode != 0
    shown = osc(stack, "admin", "hypervisor", "show", stack.host, "-f", "json")
    # What the compute's driver reported (the fake's version and CPU).
    assert shown["hypervisor_version"] == 1 and shown["vcpus"] > 0
    services = osc(stack, "admin", "compute", "service", "list", "-f", "json")
    compute = [s for s in services if s["Binary"] == "nova-compute"]
    assert [(s["Host"], s["Status"], s["State"]) for s in compute] == [
        (stack.host, "enabled", "up")]
    osc(stack, "admin", "compute", "service", "set", "--disable", "--disable-reason",
        "maintenance", stack.host, "nova-compute")

    def status():
        rows = osc(stack, "admin", "compute", "service", "list", "--service", "nova-compute",
                   "-f", "json")
        return rows[0]["Status"]
    assert status() == "disabled"
    osc(stack, "admin", "compute", "service", "set", "--enable", stack.host, "nova-compute")
    wait_for(lambda: status() == "enabled", 30, what="the compute enabled again")


def test_availability_zones(stack):
    zones = osc(stack, "demo", "availability", "zone", "list", "--compute", "-f", "json")
    assert [(z["Zone Name"], z["Zone Status"]) for z in zones] == [("nova", "available")]
    detailed = osc(stack, "admin", "availability", "zone", "list", "--compute", "--long",
                   "-f", "json")
    assert ("nova", stack.host) in {(z["Zone Name"], z["Host Name"]) for z in detailed}
