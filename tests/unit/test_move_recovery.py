"""Recovery of moves whose conductor died (nova_conductor/move_recovery.py):
the pure plan over every status, type and VM, then the whole recovery in one
process (test_resize's stack: the real scheduler, two fake compute hosts, the
in-memory RPC) on a cold migration whose orchestrator hangs mid-way, and
(test_live_migration's world) on live migrations whose conductor hangs
while the destination prepares, or after the copy succeeded."""
import datetime
import itertools
import threading

import pytest
import sqlalchemy as sa

from common import states
from common.db import vm_migrations
from common.db.models import Migration
from nova_conductor import move_recovery as mr
from nova_conductor.tasks import live_migrate
from nova_conductor.tasks.migrate import MigrateTask
from tests.unit.test_compute_manager import base_image  # noqa: F401
from tests.unit.test_evacuate import A, B, build_on
from tests.unit.test_evacuate import held as lm_held
from tests.unit.test_evacuate import migration as lm_migration
from tests.unit.test_evacuate import row as lm_row
from tests.unit.test_live_migration import Computes, make_world
from tests.unit.test_live_migration import live_migrate as api_live_migrate
from tests.unit.test_live_migration import domains as lm_domains
from tests.unit.test_resize import CTXT, Stack, row, settled

LIMITS = mr.Limits(step_timeout=10, interval=2, queue_timeout=100)
COLD_STATUSES = ("accepted", "pre-migrating", "migrating", "post-migrating", "finished",
                 "confirming", "reverting")
LIVE_STATUSES = ("accepted", "pre-migrating", "preparing", "running", "post-migrating")
VMS = (None, mr.Vm("a", states.ACTIVE, states.RESIZE_MIGRATING),
       mr.Vm("b", states.RESIZED, states.RESIZE_REVERTING),
       mr.Vm("a", states.STOPPED, states.RESIZE_PREP))


def move(migration_type, status, age):
    return mr.Move("m", "vm", migration_type, status, "a", "b", age)


def expected(migration_type, status, vm):
    """The table plan() must follow, written out."""
    if migration_type == "evacuation" or status in ("finished", "running"):
        return mr.LEAVE
    if vm is None:
        return mr.DROP
    if migration_type == "live-migration":
        return mr.LIVE_COMPLETE if status == "post-migrating" else mr.LIVE_ROLL_BACK
    return {"accepted": mr.ROLL_BACK, "pre-migrating": mr.ROLL_BACK,
            "migrating": mr.REVERT_BACK, "post-migrating": mr.REVERT_BACK,
            "confirming": mr.REDO_CONFIRM,
            "reverting": mr.REDO_REVERT if vm.vm_state == states.RESIZED
            else mr.REVERT_BACK}[status]


@pytest.mark.parametrize("migration_type", states.MIGRATION_TYPES)
def test_plan_every_status_type_and_vm(migration_type):
    statuses = LIVE_STATUSES if migration_type == "live-migration" else COLD_STATUSES
    for status, vm in itertools.product(statuses + ("done", "error"), VMS):
        after = mr.stale_after(migration_type, status, LIMITS)
        if after is None:  # no conductor waits on it: never touched, however old
            assert mr.plan(move(migration_type, status, 1e9), vm, LIMITS) == mr.LEAVE
            continue
        # A live orchestrator touches the record sooner: left to it.
        assert mr.plan(move(migration_type, status, after - 0.1), vm, LIMITS) == mr.LEAVE
        assert mr.plan(move(migration_type, status, after), vm, LIMITS) == expected(
            migration_type, status, vm), (migration_type, status, vm)


def test_stale_after_is_past_every_wait_of_a_live_orchestrator():
    # A cast may wait for a free conductor as long as a build may.
    assert mr.stale_after("resize", "accepted", LIMITS) == 100 + 12
    assert mr.stale_after("migration", "migrating", LIMITS) == 10 + 12
    # Two calls: finish (defined shut off), then power on / destination, then source.
    assert mr.stale_after("resize", "post-migrating", LIMITS) == 20 + 12
    assert mr.stale_after("resize", "reverting", LIMITS) == 20 + 12
    assert mr.stale_after("live-migration", "preparing", LIMITS) == (
        live_migrate.PREPARE_TIMEOUT + 12)
    assert mr.stale_after("live-migration", "post-migrating", LIMITS) == (
        live_migrate.POST_TIMEOUT + 12)
    for migration_type, status in (("live-migration", "running"), ("resize", "finished"),
                                   ("evacuation", "pre-migrating"), ("resize", "error")):
        assert mr.stale_after(migration_type, status, LIMITS) is None


class HangingTask(MigrateTask):
    """An orchestrator that stops (as a killed conductor) once the source
    has powered the VM off and set its disk aside, until ``release``."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.hung, self.release = threading.Event(), threading.Event()

    def _advance(self, instance_id, migration_uuid, status, new_status, task, new_task):
        if status == "migrating":
            self.hung.set()
            self.release.wait(60)
        return super()._advance(instance_id, migration_uuid, status, new_status, task,
                                new_task)


def age(db, migration_uuid, seconds):
    with db.transaction() as s:
        then = s.execute(sa.select(Migration.updated_at).where(
            Migration.uuid == migration_uuid)).scalar()
        s.execute(sa.update(Migration).where(Migration.uuid == migration_uuid).values(
            updated_at=then - datetime.timedelta(seconds=seconds)))


@pytest.fixture
def stack(conf, db, tmp_path):
    conf.set_override("move_step_timeout", 5, group="conductor")
    st = Stack(conf, db, tmp_path)
    task = st.task
    st.hanging = HangingTask(db, task.scheduler, task.compute, task.timeline, conf)
    st.conductor.migrate_task = st.hanging
    yield st
    st.hanging.release.set()
    st.stop()


def test_a_cold_migration_whose_conductor_died_goes_back_to_the_source(stack, db, conf,
                                                                       tmp_path):
    vm = stack.boot(tmp_path)
    migration_uuid = stack.api.migrate(CTXT, vm, "h2")
    assert stack.hanging.hung.wait(30)
    assert stack.domains("h1") == {vm: states.SHUTDOWN}  # off, its disk set aside
    assert stack.held(vm) == {("h2", 1, 128, 1)} and stack.held(migration_uuid) == {
        ("h1", 1, 128, 1)}
    recovery = mr.MoveRecovery(db, stack.task, None, conf)

    assert recovery.run() == {}  # not stale yet: its orchestrator may still be at work
    age(db, migration_uuid, 3600)
    assert recovery.run() == {migration_uuid: mr.REVERT_BACK}
    inst = settled(db, vm, states.ACTIVE)
    assert inst.host == "h1" and inst.power_state == states.RUNNING
    assert stack.domains("h1") == {vm: states.RUNNING} and stack.domains("h2") == {}
    assert stack.held(vm) == {("h1", 1, 128, 1)} and stack.held(migration_uuid) == set()
    assert stack.migration(vm).status == "error"
    assert recovery.run() == {}  # ended: nothing more

    # The old orchestrator wakes up: it finds the move taken over and
    # touches nothing of the VM.
    stack.hanging.release.set()
    stack.stop()
    inst = row(db, vm)
    assert (inst.host, inst.vm_state, inst.task_state) == ("h1", states.ACTIVE, None)
    assert stack.domains("h1") == {vm: states.RUNNING}
    assert stack.migration(vm).status == "error"


def test_two_conductors_recover_a_move_once(stack, db, conf, tmp_path):
    vm = stack.boot(tmp_path)
    migration_uuid = stack.api.migrate(CTXT, vm, "h2")
    assert stack.hanging.hung.wait(30)
    age(db, migration_uuid, 3600)
    first = mr.MoveRecovery(db, stack.task, None, conf)
    with db.transaction() as s:
        seen = s.execute(sa.select(Migration.updated_at).where(
            Migration.uuid == migration_uuid)).scalar()
    observed = next(m for m, *_ in first._observe() if m.uuid == migration_uuid)
    assert first._claim(observed, seen, mr.REVERT_BACK)
    assert not first._claim(observed, seen, mr.REVERT_BACK)  # the other one loses
    assert row(db, vm).task_state == states.RESIZE_REVERTING


class StallingComputes(Computes):
    """The conductor's compute client; the first call of ``stall_on`` goes
    through and its caller then hangs (a conductor killed while it waited)
    until ``release``."""

    def __init__(self, stall_on):
        super().__init__()
        self.stall_on, self.hung, self.release = stall_on, threading.Event(), threading.Event()

    def _on(self, ctxt, host, method, *args):
        result = super()._on(ctxt, host, method, *args)
        if method == self.stall_on and not self.hung.is_set():
            self.hung.set()
            self.release.wait(30)
        return result


def stalled_live_migration(conf, db, base_image, method):
    computes = StallingComputes(method)
    w = make_world(conf, db, base_image, computes=computes)
    vm = build_on(w, A)
    started = threading.Thread(target=api_live_migrate, args=(w, vm), kwargs={"host": B},
                               daemon=True)
    started.start()
    assert computes.hung.wait(30)
    with db.transaction() as s:
        uuid = vm_migrations.in_progress_for_instance(s, vm).uuid
    return w, vm, uuid, started


def test_a_live_migration_whose_conductor_died_preparing_ends_on_the_source(
        conf, db, base_image):  # noqa: F811
    w, vm, uuid, started = stalled_live_migration(conf, db, base_image, "pre_live_migration")
    assert lm_migration(db, uuid).status == "preparing" and lm_held(db, vm) == [B]
    recovery = mr.MoveRecovery(db, None, w.task, conf)
    assert recovery.run() == {}
    age(db, uuid, 3600)
    assert recovery.run() == {uuid: mr.LIVE_ROLL_BACK}
    inst = lm_row(db, vm)
    assert (inst.host, inst.vm_state, inst.task_state) == (A, states.ACTIVE, None)
    assert lm_held(db, vm) == [A] and lm_held(db, uuid) == []
    assert lm_migration(db, uuid).status == "error"
    assert (B, "rollback_live_migration_at_destination") in w.computes.sent
    assert lm_domains(w.b, vm) == [] and len(lm_domains(w.a, vm)) == 1
    w.computes.release.set()  # the old orchestrator finds the move ended
    started.join(30)
    assert all(method != "live_migration" for _host, method in w.computes.sent)
    assert lm_row(db, vm).host == A


def test_a_live_migration_whose_conductor_died_after_the_copy_completes(
        conf, db, base_image):  # noqa: F811
    w, vm, uuid, started = stalled_live_migration(conf, db, base_image,
                                                  "post_live_migration_at_destination")
    assert lm_migration(db, uuid).status == "post-migrating"
    age(db, uuid, 3600)
    assert mr.MoveRecovery(db, None, w.task, conf).run() == {uuid: mr.LIVE_COMPLETE}
    inst = lm_row(db, vm)
    assert (inst.host, inst.vm_state, inst.task_state) == (B, states.ACTIVE, None)
    assert lm_held(db, vm) == [B] and lm_held(db, uuid) == []
    assert lm_migration(db, uuid).status == "completed"
    assert lm_domains(w.a, vm) == [] and len(lm_domains(w.b, vm)) == 1
    w.computes.release.set()
    started.join(30)
    assert lm_row(db, vm).host == B and lm_migration(db, uuid).status == "completed"
