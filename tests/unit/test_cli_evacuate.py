"""``mininova vm evacuate NAME [--host H] --wait`` against the real app
(tests/unit/test_cli.py's served cloud; the conductor's side is played by a
thread that moves the VM to h2 and reports the rebuild done or failed)."""
import re
import time

import pytest

from common import states
from common.db import api as db_api
from tests.unit.test_cli import REQ, STEP, run, served_cloud


@pytest.fixture
def cloud(conf, db, image):
    with served_cloud(conf, db) as fake:
        fake.conductor.service_heartbeat(None, "h2", "mininova-compute",
                                         {"vcpus": 4, "memory_mb": 4096, "local_gb": 50})

        def evacuate_instance(ctxt, instance_id, migration_uuid, host=None):
            fake.calls.append(("evacuate_instance", instance_id, host))
            fake._later(rebuild, ctxt, instance_id, migration_uuid, host or "h2")

        def rebuild(ctxt, instance_id, migration_uuid, dest):
            time.sleep(STEP)
            with db.transaction() as s:
                db_api.instance_update_if(s, instance_id, {
                    "host": dest, "task_state": states.REBUILD_SPAWNING})
            time.sleep(STEP)
            if fake._name(instance_id).startswith("bad"):
                fake.conductor.evacuation_failed(ctxt, instance_id, dest, migration_uuid,
                                                 "disk full")
            else:
                fake.conductor.evacuation_done(ctxt, instance_id, dest, migration_uuid,
                                               "running")
        fake.evacuate_instance = evacuate_instance
        yield fake


def test_evacuate_wait(cloud):
    assert run("vm", "create", "web1", "--image", "blank", "--flavor", "m1.tiny", "--wait",
               cloud=cloud).code == 0
    r = run("vm", "evacuate", "web1", "--host", "h2", "--wait", cloud=cloud)
    assert r.code == 0, r
    assert r.out == "VM web1 is ACTIVE on h2 (evacuated from h1).\n", r
    assert "web1: REBUILD (rebuilding)" in r.err or "rebuild_spawning" in r.err, r
    assert cloud.calls[-1] == ("evacuate_instance", cloud.calls[-1][1], "h2")
    r = run("vm", "evacuate", "web1", cloud=cloud)  # h2 is up: refused, saying why
    assert r.code == 1 and "error 409: The compute service of host h2 is still up" in r.err, r
    assert run("vm", "create", "web3", "--image", "blank", "--flavor", "m1.tiny", "--wait",
               cloud=cloud).code == 0
    r = run("vm", "evacuate", "web3", cloud=cloud)  # no --wait: accepted
    assert r.code == 0 and re.fullmatch(r"Request to evacuate VM web3 accepted %s\.\n"
                                        % REQ, r.out), r


def test_failed_evacuation_exits_3_with_the_fault(cloud):
    # A VM named bad* fails its build in the fake: one built, then renamed.
    assert run("vm", "create", "web2", "--image", "blank", "--flavor", "m1.tiny", "--wait",
               cloud=cloud).code == 0
    with cloud.db.transaction() as s:
        vm = db_api.instance_get_by_ref(s, "default", "web2")
        vm.name = "badvm"
    r = run("vm", "evacuate", "badvm", "--wait", cloud=cloud)
    assert r.code == 3, r
    assert "Evacuation to h2 failed: disk full" in r.err, r
