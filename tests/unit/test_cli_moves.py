"""``mininova vm resize|resize-confirm|resize-revert|migrate --wait`` and
``mininova migration list`` as processes against the real app over
loopback; the conductor's migrate task is faked a moment later in a thread
(tests/unit/test_resize.py runs the real one)."""
import contextlib
import threading
import time

import pytest
from werkzeug.serving import make_server

from common import states
from common.db import vm_migrations
from common.db import api as db_api
from common.db import flavors as db_flavors
from nova_api.app import create_app
from mininova_lab.waiting import wait_for
from tests.unit.conftest import token_for
from tests.unit.test_cli import STEP, FakeCloud, run, table_rows


class MovingCloud(FakeCloud):
    """FakeCloud plus the conductor's migrate task: a VM whose name starts
    with "stuck" has its resize fail (back ACTIVE on its host)."""

    def migrate_server(self, ctxt, instance_id, migration_uuid, target_host=None):
        self.calls.append(("migrate_server", instance_id, target_host))
        self._later(self._move, ctxt, instance_id, migration_uuid, target_host or "h2")

    def _move(self, ctxt, instance_id, migration_uuid, dest):
        time.sleep(STEP)
        with self.timeline.step(ctxt, instance_id, "resize_migrate"):
            pass
        with self.db.transaction() as s:
            if self._name(instance_id).startswith("stuck"):
                vm_migrations.update_if(s, migration_uuid, {"status": "error"})
                db_api.instance_update_if(s, instance_id, {"task_state": None})
                failed = True
            else:
                vm_migrations.update_if(s, migration_uuid, {"status": "finished",
                                                            "dest_host": dest})
                db_api.instance_update_if(s, instance_id, {
                    "vm_state": states.RESIZED, "task_state": None, "host": dest})
                failed = False
        if failed:
            self.timeline.finish(ctxt, instance_id, "error", "finish_resize failed: no room")
        else:
            self.timeline.finish(ctxt, instance_id, "success")

    def confirm_resize(self, ctxt, instance_id, migration_uuid):
        self._later(self._end, ctxt, instance_id, migration_uuid, "confirmed", None)

    def revert_resize(self, ctxt, instance_id, migration_uuid):
        self._later(self._end, ctxt, instance_id, migration_uuid, "reverted", "h1")

    def _end(self, ctxt, instance_id, migration_uuid, status, host):
        time.sleep(STEP)
        with self.db.transaction() as s:
            vm_migrations.update_if(s, migration_uuid, {"status": status})
            values = {"vm_state": states.ACTIVE, "task_state": None}
            if host:
                values["host"] = host
            db_api.instance_update_if(s, instance_id, values)
        self.timeline.finish(ctxt, instance_id, "success")


@contextlib.contextmanager
def served(conf, db):
    fake = MovingCloud(db)
    app = create_app(conf, db, fake, fake)
    server = make_server("127.0.0.1", 0, app, threaded=True)
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


@pytest.fixture
def cloud(conf, db, image):
    with db.transaction() as s:
        db_flavors.create(s, "m1.big", 2, 256, 2, flavor_id="91")
        for host in ("h1", "h2"):
            db_api.service_heartbeat(s, host, "mininova-compute",
                                     {"vcpus": 8, "memory_mb": 8192, "local_gb": 100})
    with served(conf, db) as fake:
        yield fake


def test_resize_confirm_revert_migrate_and_the_listing(cloud):
    assert run("vm", "create", "web1", "--image", "blank", "--flavor", "m1.tiny", "--wait",
               cloud=cloud).code == 0
    r = run("vm", "resize", "web1", "--flavor", "m1.big", "--wait", cloud=cloud)
    assert r.code == 0 and r.out == "VM web1 is VERIFY_RESIZE on h2 (was on h1).\n", r
    assert "step: resize_migrate" in r.err
    r = run("vm", "resize-revert", "web1", "--wait", cloud=cloud)
    assert r.code == 0 and r.out == "VM web1 is ACTIVE on h1 (was on h2).\n", r
    r = run("vm", "migrate", "web1", "--host", "h2", cloud=cloud)
    assert r.code == 0 and "Request to migrate VM web1 accepted" in r.out, r
    assert cloud.calls[-1][0::2] == ("migrate_server", "h2")
    wait_for(lambda: run("vm", "show", "web1", "-f", "json", cloud=cloud).json()["vm"][
        "status"] == "VERIFY_RESIZE", 30, what="the migration's end")
    r = run("vm", "resize-confirm", "web1", "--wait", cloud=cloud, timeout=60)
    assert r.code == 0 and r.out == "VM web1 is ACTIVE on h2 (was on h2).\n", r
    rows = table_rows(run("migration", "list", cloud=cloud).out)
    assert rows[0][:6] == ["ID", "VM", "Type", "Status", "Source", "Destination"]
    assert [row[2:6] for row in rows[1:]] == [["migration", "confirmed", "h1", "h2"],
                                              ["resize", "reverted", "h1", "h2"]]
    rows = table_rows(run("migration", "list", "--status", "reverted", cloud=cloud).out)
    assert len(rows) == 2
    r = run("migration", "list", "--vm", "web1", "-f", "json", cloud=cloud)
    assert [m["type"] for m in r.json()["migrations"]] == ["migration", "resize"]


def test_a_failed_resize_exits_3_with_the_reason(cloud):
    assert run("vm", "create", "stuck1", "--image", "blank", "--flavor", "m1.tiny", "--wait",
               cloud=cloud).code == 0
    r = run("vm", "resize", "stuck1", "--flavor", "m1.big", "--wait", cloud=cloud)
    assert r.code == 3 and "finish_resize failed: no room" in r.err, r
    r = run("vm", "resize-confirm", "stuck1", cloud=cloud)
    assert r.code == 1 and "cannot confirm resize VM stuck1 while it is ACTIVE" in r.err, r
