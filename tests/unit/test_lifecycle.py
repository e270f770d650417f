"""Power actions, their guards, event-driven sync and the reconcile plan."""
import os
import threading

import pytest


from common import context, states
from common.db import allocations
from common.db import api as db_api
from nova_compute import events, reconciler
from nova_conductor.manager import ConductorManager
from tests.unit.test_compute_manager import make_manager, placed_vm
from tests.unit.conftest import auth_headers
from mininova_lab.waiting import wait_for

CTXT = context.RequestContext(project_id="p")


@pytest.fixture
def base_image(tmp_path):
    import hashlib
    src = tmp_path / "img"
    src.write_bytes(b"QFI\xfb" + b"\0" * 4092)
    return str(src), hashlib.sha256(src.read_bytes()).hexdigest()


@pytest.fixture
def running(conf, db, base_image):
    manager = make_manager(conf, db)
    instance, image = placed_vm(db, conf, *base_image)
    manager.sources[image["id"]] = base_image[0]
    manager.build_instance(CTXT, instance, image)
    yield manager, instance["id"]
    for inst in manager.driver.list_instances():
        manager.driver.destroy(inst["id"])
    manager.driver.cleanup_host()


def row(db, instance_id):
    with db.transaction() as s:
        return db_api.instance_get(s, instance_id)


def set_task(db, instance_id, task):
    with db.transaction() as s:
        db_api.instance_update_if(s, instance_id, {"task_state": task})


@pytest.mark.parametrize("task,method,vm_state,power", [
    (states.POWERING_OFF, "stop_instance", states.STOPPED, "shutdown"),
    (states.PAUSING, "pause_instance", states.PAUSED, "paused"),
    (states.SUSPENDING, "suspend_instance", states.SUSPENDED, "suspended"),
    (states.REBOOTING_HARD, "reboot_instance", states.ACTIVE, "running"),
])
def test_power_actions(running, db, conf, task, method, vm_state, power):
    manager, vm = running
    conf.set_override("shutdown_timeout", 0, group="compute")
    set_task(db, vm, task)
    kwargs = {"hard": True} if task == states.REBOOTING_HARD else {}
    getattr(manager, method)(CTXT, vm, **kwargs)
    inst = row(db, vm)
    assert (inst.vm_state, inst.task_state, inst.power_state) == (vm_state, None, power)


def test_round_trips(running, db):
    manager, vm = running
    for task, method in ((states.POWERING_OFF, "stop_instance"),
                         (states.POWERING_ON, "start_instance"),
                         (states.PAUSING, "pause_instance"),
                         (states.UNPAUSING, "unpause_instance"),
                         (states.SUSPENDING, "suspend_instance"),
                         (states.RESUMING, "resume_instance")):
        set_task(db, vm, task)
        getattr(manager, method)(CTXT, vm)
        assert row(db, vm).vm_state == states.TASK_RESULT[task]
    assert row(db, vm).power_state == "running"


def test_overtaken_action_does_nothing(running, db):
    manager, vm = running
    set_task(db, vm, states.DELETING)  # the delete won
    manager.stop_instance(CTXT, vm)
    assert manager.driver.get_info(vm)["power_state"] == "running"


def test_external_stop_and_start_sync(running, db):
    manager, vm = running
    manager.driver.power_off(vm)  # behind mininova's back
    manager.sync_power_state(CTXT, vm)
    inst = row(db, vm)
    assert (inst.vm_state, inst.power_state) == (states.STOPPED, "shutdown")
    assert states.status(inst.vm_state, inst.task_state) == "SHUTOFF"
    manager.driver.power_on(vm)
    manager.sync_power_state(CTXT, vm)
    assert row(db, vm).vm_state == states.ACTIVE


def test_sync_leaves_a_task_in_progress_alone(running, db):
    manager, vm = running
    set_task(db, vm, states.REBOOTING)
    manager.driver.power_off(vm)
    manager.sync_power_state(CTXT, vm)
    assert row(db, vm).vm_state == states.ACTIVE


def test_reconcile_finds_vanished_domain(running, db):
    manager, vm = running
    manager.driver.destroy(vm)  # gone behind mininova's back
    steps = manager.reconcile(CTXT)
    assert steps == [reconciler.Step("vanished", vm)]
    inst = row(db, vm)
    assert inst.vm_state == states.ERROR and "vanished" in inst.fault


def test_reconcile_reports_and_reaps_orphans(running, db, conf):
    manager, vm = running
    with db.transaction() as s:  # the row goes, the domain stays
        db_api.instance_soft_delete(s, vm)
    assert manager.reconcile(CTXT) == [reconciler.Step("orphan", vm, "running")]
    assert manager.driver.list_instances()  # reported, not destroyed
    conf.set_override("reap_orphans", True, group="compute")
    manager.reconcile(CTXT)
    assert manager.driver.list_instances() == []


def test_settle_interrupted_build_and_delete(conf, db, base_image):
    manager = make_manager(conf, db)
    try:
        a, image = placed_vm(db, conf, *base_image, name="a")
        b, _ = placed_vm(db, conf, *base_image, name="b")
        queued, _ = placed_vm(db, conf, *base_image, name="queued")
        manager.sources[image["id"]] = base_image[0]
        set_task(db, b["id"], states.SPAWNING)
        manager.build_instance(CTXT, b, image)
        set_task(db, b["id"], states.DELETING)  # a delete was under way
        os.makedirs(os.path.join(conf.compute.instances_path, a["id"]))  # a's build had begun
        manager.settle_interrupted(CTXT)
        inst = row(db, a["id"])
        assert inst.vm_state == states.ERROR and "interrupted" in inst.fault
        assert not os.path.exists(os.path.join(conf.compute.instances_path, a["id"]))
        with db.transaction() as s:
            assert not allocations.of_consumer(s, a["id"])
            assert allocations.of_consumer(s, queued["id"])
            assert sorted(i.id for i in db_api.instance_list(s)) == sorted([a["id"], queued["id"]])
        assert row(db, queued["id"]).task_state == states.SPAWNING  # its request will build it
        assert manager.driver.list_instances() == []
        manager.build_instance(CTXT, queued, image)  # the redelivered request
        assert row(db, queued["id"]).vm_state == states.ACTIVE
    finally:
        manager.driver.cleanup_host()


def test_plan_is_pure():
    desired = {
        "a": {"host": "h1", "task_state": None, "vm_state": "active", "power_state": "running"},
        "b": {"host": "h1", "task_state": None, "vm_state": "active", "power_state": "running"},
        "c": {"host": "h1", "task_state": "spawning", "vm_state": "building",
              "power_state": "nostate"},
        "d": {"host": "h1", "task_state": None, "vm_state": "stopped", "power_state": "shutdown"},
    }
    actual = {"a": "running", "b": "shutdown", "e": "running"}
    assert reconciler.plan(desired, actual, "h1") == [
        reconciler.Step("sync_power", "b", "shutdown"), reconciler.Step("vanished", "d"),
        reconciler.Step("orphan", "e", "running")]


def test_vm_state_for_power():
    assert states.vm_state_for_power("active", "shutdown") == "stopped"
    assert states.vm_state_for_power("stopped", "running") == "active"
    assert states.vm_state_for_power("active", "paused") == "paused"
    assert states.vm_state_for_power("error", "running") == "error"
    assert states.vm_state_for_power("building", "shutdown") == "building"


class ScriptedSync:
    """A sync answering from a script per call; every call recorded."""

    def __init__(self, *answers):
        self.answers, self.calls = list(answers), []
        self.done = threading.Event()

    def __call__(self, ctxt, uuid, expected):
        self.calls.append((uuid, expected))
        answer = self.answers.pop(0) if self.answers else events.DONE
        if not self.answers:
            self.done.set()
        return answer


def test_events_collapse_into_one_read_of_the_latest_hint():
    sync = ScriptedSync(events.DONE)
    sync_ = events.PowerEventSync(debounce=0.2)
    # Noted before the reader starts: one read, of the latest event's kind.
    sync_.on_event("vm-1", "stopped")
    sync_.on_event("vm-1", "started")   # a reboot
    sync_.on_event("vm-1", "defined")   # irrelevant
    sync_.start(sync)
    try:
        wait_for(sync.done.is_set, 5, what="the read")
        assert sync.calls == [("vm-1", None)]
    finally:
        sync_.stop()


def test_a_stop_event_is_read_at_once_and_again_while_busy_or_changing():
    """BUSY (a task holds the VM's lock): asked again with the same hint;
    CHANGING (not stopped yet): read again after the debounce, reported as is."""
    sync = ScriptedSync(events.BUSY, events.CHANGING, events.DONE)
    sync_ = events.PowerEventSync(debounce=0.05)
    sync_.start(sync)
    try:
        sync_.on_event("vm-1", "stopped")
        wait_for(sync.done.is_set, 5, what="the reads")
        stopped = events.SETTLES_TO["stopped"]
        assert sync.calls == [("vm-1", stopped), ("vm-1", stopped), ("vm-1", None)]
    finally:
        sync_.stop()


def test_api_action_guards(conf, db, recorder, base_image):
    from nova_api.app import create_app
    scheduler, compute = recorder(), recorder()
    api = create_app(conf, db, scheduler, compute).test_client()
    hdr_p = auth_headers(db, "p")
    instance, _ = placed_vm(db, conf, *base_image)
    ConductorManager(db).instance_spawned(CTXT, instance["id"], conf.host, "running")
    r = api.post("/v1/vms/vm1/action", json={"start": {}}, headers=hdr_p)
    assert r.status_code == 409 and "while it is ACTIVE" in r.get_json()["error"]["message"]
    r = api.post("/v1/vms/vm1/action", json={"stop": {}}, headers=hdr_p)
    assert r.status_code == 202
    assert compute.calls == [("stop_instance", (conf.host, instance["id"]), {})]
    r = api.post("/v1/vms/vm1/action", json={"reboot": {"type": "hard"}},
                 headers=hdr_p)
    assert r.status_code == 409 and "powering-off" in r.get_json()["error"]["message"]
    for body in ({"explode": {}}, {"stop": {}, "start": {}}, {"reboot": {"type": "x"}}, []):
        r = api.post("/v1/vms/vm1/action", json=body, headers=hdr_p)
        assert r.status_code == 400, body
    assert api.delete("/v1/vms/vm1", headers=hdr_p).status_code == 202
    r = api.post("/v1/vms/vm1/action", json={"pause": {}}, headers=hdr_p)
    assert r.status_code == 409 and "deleting" in r.get_json()["error"]["message"]
