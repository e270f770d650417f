"""``mininova vm live-migrate [--host H] [--wait]`` and ``live-migrate-abort``
as processes against the real app over loopback; the conductor's
live-migrate task is faked a moment later in a thread, with a progress
report half-way (tests/unit/test_live_migration.py runs the real one). A VM
whose name starts with "stuck" has its copy aborted (back ACTIVE on h1); one
whose name starts with "held" too, but only once the test sets ``release``."""
import contextlib
import threading
import time

import pytest
from werkzeug.serving import make_server

from common.db import api as db_api
from common.db import vm_migrations
from nova_api.app import create_app
from tests.unit.conftest import token_for
from tests.unit.test_cli import STEP, FakeCloud, run

MIB = 1024 * 1024


class LiveCloud(FakeCloud):
    def __init__(self, db):
        super().__init__(db)
        self.release = threading.Event()

    def live_migrate_instance(self, ctxt, instance_id, migration_uuid, host=None):
        self.calls.append(("live_migrate_instance", instance_id, host))
        self._later(self._move, ctxt, instance_id, migration_uuid, host or "h2")

    def live_migration_abort(self, ctxt, host, instance_id, migration_uuid):
        self.calls.append(("live_migration_abort", host, instance_id))

    def _move(self, ctxt, instance_id, migration_uuid, dest):
        with self.db.transaction() as s:
            vm_migrations.update_if(s, migration_uuid, {
                "status": "running", "dest_host": dest, "memory_total": 128 * MIB,
                "memory_processed": 64 * MIB, "memory_remaining": 64 * MIB})
        time.sleep(STEP * 4)
        name = self._name(instance_id)
        if name.startswith("held"):
            self.release.wait(60)
        stuck = name.startswith(("stuck", "held"))
        with self.db.transaction() as s:
            vm_migrations.update_if(s, migration_uuid,
                                    {"status": "cancelled" if stuck else "completed"})
            db_api.instance_update_if(s, instance_id, {"task_state": None} if stuck
                                      else {"task_state": None, "host": dest})
        if stuck:
            self.timeline.finish(ctxt, instance_id, "error",
                                 "Migration of VM %s was aborted." % instance_id)
        else:
            self.timeline.finish(ctxt, instance_id, "success")


@contextlib.contextmanager
def served(conf, db):
    fake = LiveCloud(db)
    app = create_app(conf, db, fake, fake)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = "http://127.0.0.1:%d" % server.server_port
    fake.token = token_for(db, "default", "admin")
    try:
        yield fake
    finally:
        fake.release.set()
        server.shutdown()
        thread.join(5)
        for t in fake.threads:
            t.join(5)


@pytest.fixture
def cloud(conf, db, image):
    with db.transaction() as s:
        for host in ("h1", "h2"):
            db_api.service_heartbeat(s, host, "mininova-compute",
                                     {"vcpus": 8, "memory_mb": 8192, "local_gb": 100})
    with served(conf, db) as fake:
        yield fake


def test_live_migrate_wait_shows_the_copy_and_ends_on_the_destination(cloud):
    assert run("vm", "create", "web1", "--image", "blank", "--flavor", "m1.tiny", "--wait",
               cloud=cloud).code == 0
    r = run("vm", "live-migrate", "web1", "--host", "h2", "--wait", cloud=cloud)
    assert r.code == 0 and r.out == "VM web1 is ACTIVE on h2 (live-migrated from h1).\n", r
    assert "MIGRATING, migration running" in r.err and "memory 64/128 MiB" in r.err, r.err
    assert cloud.calls[-1] == ("live_migrate_instance", cloud.calls[-1][1], "h2")
    r = run("migration", "list", "--vm", "web1", "-f", "json", cloud=cloud)
    (m,) = r.json()["migrations"]
    assert (m["type"], m["status"], m["memory_processed_bytes"]) == (
        "live-migration", "completed", 64 * MIB)


def test_an_aborted_live_migration_exits_3_and_the_vm_stays(cloud):
    assert run("vm", "create", "held1", "--image", "blank", "--flavor", "m1.tiny", "--wait",
               cloud=cloud).code == 0
    r = run("vm", "live-migrate", "held1", cloud=cloud)
    assert r.code == 0 and "Request to live-migrate VM held1 accepted" in r.out, r
    r = run("vm", "live-migrate-abort", "held1", cloud=cloud)
    assert r.code == 0 and "Abort of live migration" in r.out, r
    assert cloud.calls[-1][:2] == ("live_migration_abort", "h1")
    r = run("vm", "live-migrate", "held1", "--wait", cloud=cloud)
    assert r.code == 1 and "cannot live-migrate VM held1" in r.err, r  # still migrating
    cloud.release.set()


def test_live_migrate_wait_of_an_aborted_one(cloud):
    assert run("vm", "create", "stuck2", "--image", "blank", "--flavor", "m1.tiny", "--wait",
               cloud=cloud).code == 0
    r = run("vm", "live-migrate", "stuck2", "--wait", cloud=cloud)
    assert r.code == 3 and "was cancelled" in r.err and "ACTIVE on h1" in r.err, r
    assert "was aborted" in r.err
