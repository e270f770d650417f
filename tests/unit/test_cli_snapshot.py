"""``mininova vm snapshot VM NAME [--wait]`` against the real app over
loopback, with a fake compute that fills the image (or fails and discards
it) a moment later, as the real one would."""
import re
import threading
import time

import pytest
from werkzeug.serving import make_server

from common import states
from common.db import images as db_images
from nova_api.app import create_app
from tests.unit.conftest import token_for
from tests.unit.test_cli import REQ, STEP, FakeCloud, fields, run


class SnapshottingCloud(FakeCloud):
    """Also takes snapshots: VMs named flaky* fail theirs (image discarded)."""

    def snapshot_instance(self, ctxt, host, instance_id, image_id):
        self.calls.append(("snapshot_instance", instance_id, image_id))
        self._later(self._snapshot, ctxt, host, instance_id, image_id)

    def _snapshot(self, ctxt, host, instance_id, image_id):
        with self.timeline.step(ctxt, instance_id, "snapshot disk"):
            time.sleep(STEP)
        flaky = self._name(instance_id).startswith("flaky")
        with self.db.transaction() as s:
            image = s.get(db_images.Image, image_id)
            if flaky:
                db_images.delete(s, image)
            else:
                image.status, image.size, image.md5 = "active", 1024, "0" * 32
        if flaky:
            self.conductor.instance_task_failed(ctxt, instance_id, host, states.IMAGE_SNAPSHOT,
                                                "running", "qemu-img convert: no space left")
            self.timeline.finish(ctxt, instance_id, "error", "no space left")
        else:
            self.conductor.instance_task_done(ctxt, instance_id, host, states.IMAGE_SNAPSHOT,
                                              "running")
            self.timeline.finish(ctxt, instance_id, "success")


@pytest.fixture
def cloud(conf, db, image):
    fake = SnapshottingCloud(db)
    server = make_server("127.0.0.1", 0, create_app(conf, db, fake, fake), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = "http://127.0.0.1:%d" % server.server_port
    fake.token = token_for(db, "default", "admin")
    try:
        yield fake
    finally:
        server.shutdown()
        thread.join(5)
        for t in fake.threads:
            t.join(5)


def booted(cloud, name):
    r = run("vm", "create", name, "--image", "blank", "--flavor", "m1.tiny", "--wait",
            cloud=cloud)
    assert r.code == 0, r


def test_snapshot_wait_ends_with_the_active_image(cloud):
    booted(cloud, "web1")
    r = run("vm", "snapshot", "web1", "snap1", "--property", "purpose=backup", "--wait",
            cloud=cloud)
    assert r.code == 0, r
    shown = fields(r.out)
    assert (shown["name"], shown["status"], shown["disk_format"]) == ("snap1", "active",
                                                                       "qcow2")
    assert "image active" in r.err
    r = run("vm", "show", "web1", "-f", "json", cloud=cloud)
    assert r.json()["vm"]["task_state"] is None


def test_snapshot_without_wait_names_the_image(cloud):
    booted(cloud, "web1")
    r = run("vm", "snapshot", "web1", "snap1", cloud=cloud)
    assert r.code == 0, r
    assert "Snapshot of VM web1 accepted: image " in r.out


def test_a_failed_snapshot_exits_3_with_the_fault(cloud):
    booted(cloud, "flaky1")
    r = run("vm", "snapshot", "flaky1", "snap1", "--wait", cloud=cloud)
    assert r.code == 3, r
    assert "snapshot of VM flaky1 failed: qemu-img convert: no space left" in r.err
    assert r.err.rstrip().endswith(")") and " (request req-" in r.err


def test_a_snapshot_refused_now_is_an_api_error(cloud):
    assert run("vm", "create", "slow1", "--image", "blank", "--flavor", "m1.tiny",
               cloud=cloud).code == 0  # slow*: never leaves the scheduler
    r = run("vm", "snapshot", "slow1", "s", cloud=cloud)
    assert r.code == 1 and re.fullmatch(
        r"error 409: cannot snapshot VM slow1 before it is on a host \(status BUILD\) %s\n"
        % REQ, r.err), r
