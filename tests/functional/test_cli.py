"""The ``mininova`` CLI end to end: a real stack (API, scheduler and compute
as processes, RabbitMQ, PostgreSQL, libvirtd with QEMU guests), the CLI as a
process with no site-packages (``python -S``)."""
import os
import re
import subprocess
import sys

import pytest
import sqlalchemy as sa

from mininova_lab.stack import ROOT, Stack, domain_names, qemu_img_create
from tests.unit.test_cli import Result

pytestmark = pytest.mark.real_services("rabbitmq", "postgresql", "libvirt", "http")

REQ = r"\(request req-[0-9a-f-]+\)"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("cli"), network="").start()
    try:
        yield s
    finally:
        s.delete_all_vms()
        s.stop()


def cli(stack, *args, timeout=180):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MININOVA_")}
    env.update(MININOVA_URL=stack.url, MININOVA_TOKEN=stack.http.headers["X-Auth-Token"])
    return Result(subprocess.run([sys.executable, "-S", "-m", "mininova_client.cli", *args],
                                 cwd=ROOT, env=env, capture_output=True, text=True,
                                 timeout=timeout))


def fields(text):
    return {line.split("|")[1].strip(): line.split("|")[2].strip()
            for line in text.splitlines() if line.startswith("| ")}


def add_image(stack, name):
    """A blank qcow2, uploaded with ``mininova image add`` (streamed)."""
    path = os.path.join(stack.workdir, name + ".qcow2")
    qemu_img_create(path, "1G")
    r = cli(stack, "image", "add", name, path, "-f", "json")
    assert r.code == 0, r
    return r.json()["image"]


def test_vm_lifecycle_with_wait(stack):
    image = add_image(stack, "blank")
    assert image["status"] == "active" and image["disk_format"] == "qcow2"
    r = cli(stack, "vm", "create", "cli1", "--image", "blank", "--flavor", "m1.tiny",
            "--wait", "--timeout", "120")
    assert r.code == 0, r
    vm = fields(r.out)
    assert vm["status"] == "ACTIVE" and vm["host"] == stack.host and vm["power_state"] == "running"
    assert "mininova-" + vm["id"] in domain_names()
    # Not a terminal: plain progress lines, the action's steps among them.
    assert re.search(r"\] cli1: BUILD .*step: ", r.err) and "\r" not in r.err, r
    assert r.err.splitlines()[-1].split("] ", 1)[1].startswith("cli1: ACTIVE")

    r = cli(stack, "vm", "start", "cli1")
    assert r.code == 1 and re.fullmatch(
        r"error 409: cannot start VM cli1 while it is ACTIVE %s\n" % REQ, r.err), r

    r = cli(stack, "vm", "stop", "cli1", "--wait", "--timeout", "120")
    assert r.code == 0 and r.out == "VM cli1 is SHUTOFF.\n", r
    assert "step: powering-off" in r.err
    r = cli(stack, "vm", "start", "cli1", "--wait", "--timeout", "120", "-f", "json")
    assert r.code == 0 and r.json()["vm"]["status"] == "ACTIVE", r

    r = cli(stack, "vm", "actions", "cli1", "-f", "json")
    assert r.code == 0, r
    actions = r.json()["actions"]
    assert [a["action"] for a in actions] == ["start", "stop", "create"]
    assert all(a["result"] == "success" for a in actions), actions
    r = cli(stack, "vm", "actions", "cli1", actions[-1]["request_id"])
    assert r.code == 0, r
    assert fields(r.out.split("\n\n")[0])["action"] == "create"
    events = [line.split("|")[1].strip() for line in r.out.split("\n\n")[1].splitlines()
              if line.startswith("| ")][1:]
    assert events[0] == "accepted" and len(events) > 2, r.out

    r = cli(stack, "vm", "list")
    assert r.code == 0 and re.search(r"\| cli1 +\| ACTIVE +\|", r.out), r
    assert cli(stack, "vm", "console", "cli1", "--lines", "5").code == 0

    r = cli(stack, "vm", "delete", "cli1", "--wait", "--timeout", "120")
    assert r.code == 0 and r.out == "VM cli1 deleted.\n", r
    assert "mininova-" + vm["id"] not in domain_names()
    r = cli(stack, "vm", "show", "cli1")
    assert r.code == 1 and r.err.startswith("error 404: ") and "(request req-" in r.err
    # The timeline outlives the VM, by id.
    r = cli(stack, "vm", "actions", vm["id"], "-f", "json")
    assert r.json()["actions"][0]["action"] == "delete"


def test_create_wait_error_exits_3_with_fault(stack):
    image = add_image(stack, "doomed")
    engine = sa.create_engine(stack.db_url)
    with engine.connect() as c:
        location = c.execute(sa.text("SELECT location FROM images WHERE id = :i"),
                             {"i": image["id"]}).scalar()
    engine.dispose()
    os.unlink(location)  # the store lost the file
    r = cli(stack, "vm", "create", "doomed1", "--image", "doomed", "--flavor", "m1.tiny",
            "--wait", "--timeout", "120")
    assert r.code == 3, r
    error = r.err.splitlines()[-1]
    assert error.startswith("error: VM doomed1 went ERROR: ") and re.search(REQ, error), r
    assert "doomed" in error or image["id"] in error
    r = cli(stack, "vm", "delete", "doomed1", "--wait", "--timeout", "120")
    assert r.code == 0, r


def test_hosts_and_services(stack):
    r = cli(stack, "host", "show", stack.host)
    assert r.code == 0 and fields(r.out)["state"] == "up", r
    r = cli(stack, "service", "disable", stack.host, "--reason", "cli test")
    assert r.code == 0 and fields(r.out)["status"] == "disabled", r
    r = cli(stack, "vm", "create", "nowhere", "--image", "blank", "--flavor", "m1.tiny",
            "--wait", "--timeout", "60")
    assert r.code == 3 and "went ERROR" in r.err, r  # no host left for it
    assert cli(stack, "vm", "delete", "nowhere", "--wait").code == 0
    r = cli(stack, "service", "enable", stack.host, "-f", "json")
    assert r.code == 0 and r.json()["service"]["status"] == "enabled", r
    assert cli(stack, "host", "list", "-f", "json").json()["hosts"][0]["status"] == "enabled"
