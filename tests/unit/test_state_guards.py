"""State guards: which action the API lets start from which state (409
otherwise), an action the broker could not carry leaves no task behind, and
no late report from compute can undo a delete."""
import pytest

from common import exception, states
from common.db import allocations
from common.db import api as db_api
from common.db.allocations import Resources
from nova_api.app import create_app
from nova_conductor.manager import ConductorManager
from tests.unit.conftest import auth_headers
from tests.unit.test_scheduler import CTXT, RATIOS, add_host, add_vm, get

# Nova's rules, written out here rather than read from common.states: what
# each action may start from, when no task is in progress.
ALLOWED = {
    "stop": {"active", "paused", "suspended"},
    "start": {"stopped"},
    "reboot": {"active"},
    "reboot_hard": {"active", "stopped", "paused", "suspended"},
    "pause": {"active"},
    "unpause": {"paused"},
    "suspend": {"active"},
    "resume": {"suspended"},
}
BODIES = {"reboot": {"reboot": {"type": "soft"}}, "reboot_hard": {"reboot": {"type": "hard"}}}
VM_STATES = ["building", "active", "stopped", "paused", "suspended", "error"]


def vm_on_host(db, name, vm_state, host="h1"):
    vm = add_vm(db, name)
    with db.transaction() as s:
        db_api.instance_update_if(s, vm, {"vm_state": vm_state, "task_state": None,
                                          "host": host})
    return vm


@pytest.fixture
def api(conf, db, recorder):
    compute = recorder()
    client = create_app(conf, db, recorder(), compute).test_client()
    client.environ_base.update(HTTP_X_AUTH_TOKEN=auth_headers(db, "p")["X-Auth-Token"])
    client.compute = compute
    return client


@pytest.mark.parametrize("action", sorted(ALLOWED))
def test_each_action_starts_only_from_its_states(api, db, action):
    body = BODIES.get(action, {action: {}})
    for vm_state in VM_STATES:
        vm = vm_on_host(db, "%s-%s" % (action, vm_state), vm_state)
        r = api.post("/v1/vms/%s/action" % vm, json=body)
        if vm_state in ALLOWED[action]:
            assert r.status_code == 202, (vm_state, r.get_json())
            assert api.compute.calls[-1][0] == "%s_instance" % action.split("_")[0]
            assert get(db, vm).task_state is not None
        else:
            assert r.status_code == 409, (vm_state, r.get_json())
            assert (get(db, vm).vm_state, get(db, vm).task_state) == (vm_state, None)


def test_a_vm_on_no_host_takes_no_action(api, db):
    """Nothing to cast it to (a row in that state is damaged, not usual)."""
    vm = vm_on_host(db, "hostless", states.ACTIVE, host=None)
    assert api.post("/v1/vms/%s/action" % vm, json={"stop": {}}).status_code == 409
    assert api.compute.calls == [] and get(db, vm).task_state is None


def test_an_action_the_broker_refused_leaves_no_task(conf, db, recorder):
    broken = recorder(fail_with=exception.ServiceUnavailable(reason="message broker unreachable"))
    api = create_app(conf, db, recorder(), broken).test_client()
    headers = auth_headers(db, "p")
    vm = vm_on_host(db, "vm", states.ACTIVE)
    r = api.post("/v1/vms/%s/action" % vm, json={"stop": {}}, headers=headers)
    assert r.status_code == 503
    inst = get(db, vm)
    assert (inst.vm_state, inst.task_state) == (states.ACTIVE, None)  # the user may try again


@pytest.fixture
def deleting(db):
    """An ACTIVE VM on h1 with a claim, deleted by the user while it was
    being stopped: its task is now DELETING."""
    add_host(db, "h1")
    vm = vm_on_host(db, "vm", states.ACTIVE)
    with db.transaction() as s:
        assert allocations.allocate(s, vm, "h1", Resources(1, 128, 1), RATIOS)
        db_api.instance_update_if(s, vm, {"task_state": states.DELETING})
    return vm


@pytest.mark.parametrize("report", [
    lambda c, vm: c.instance_task_done(CTXT, vm, "h1", states.POWERING_OFF, "shutdown"),
    lambda c, vm: c.instance_task_failed(CTXT, vm, "h1", states.POWERING_OFF, "running",
                                         "the guest ignored it"),
    lambda c, vm: c.instance_vanished(CTXT, vm, "h1"),
    lambda c, vm: c.instance_power_sync(CTXT, vm, "h1", "shutdown"),
    lambda c, vm: c.instance_spawned(CTXT, vm, "h1", "running"),
    lambda c, vm: c.instance_build_failed(CTXT, vm, "h1", "boom"),
    lambda c, vm: c.instance_terminated(CTXT, vm, "h2"),  # not the VM's host
], ids=["task_done", "task_failed", "vanished", "power_sync", "spawned", "build_failed",
        "terminated_elsewhere"])
def test_a_late_report_cannot_undo_a_delete(db, deleting, report):
    assert not report(ConductorManager(db), deleting)
    inst = get(db, deleting)
    assert (inst.vm_state, inst.task_state, inst.host, inst.fault) == (
        states.ACTIVE, states.DELETING, "h1", None)
    with db.transaction() as s:
        assert allocations.of_consumer(s, deleting)
    # ... and the delete still ends as it should.
    assert ConductorManager(db).instance_terminated(CTXT, deleting, "h1")
    with db.transaction() as s:
        assert not allocations.of_consumer(s, deleting)
        assert db_api.instance_list(s) == []
