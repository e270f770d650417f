"""Moves whose conductor died: level-based recovery, as Nova's start-up
cleanup (_init_instance and the migrations left 'migrating').

A resize, cold migration or live migration is orchestrated by one conductor
(nova_conductor/tasks/migrate.py, live_migrate.py), which touches the
migration record at every step and never waits on one step longer than its
call timeout. A record of a conductor-driven status untouched for longer than
every wait its orchestrator could be in (``stale_after``) has no orchestrator
any more (killed, its host gone): whichever conductor sees it first (a
restarted one, or a survivor) claims it with a conditional UPDATE of its
status and ``updated_at`` (so two conductors never both act) and applies
``plan(move, vm)``:

- resize / cold migration before the source powered the VM off (accepted,
  pre-migrating): ended where it began, nothing having left the source;
- resize / cold migration after (migrating, post-migrating): rolled back as a
  revert (the source keeps its disk set aside until a confirm, whatever the
  destination did): the destination destroys its copy if it answers, the
  source defines the VM again with its old flavor, running if it ran; the VM
  ACTIVE (or STOPPED) on the source, or ERROR with a fault if the source
  cannot take it back: one copy or none running, never two;
- a confirm or revert the user asked for: carried out again (each step is
  idempotent on the hosts);
- live migration before the copy started (accepted, pre-migrating,
  preparing): ended, the guest never left the source; after the copy
  succeeded (post-migrating, the guest runs on the destination only):
  completed. A copy in progress ("running") is the source host's business
  (it reports when it ends) and is left alone;
- a VM deleted meanwhile: the record ends "error" (the delete freed the
  allocations and the hosts' copies).
"""
import dataclasses
import logging

import sqlalchemy as sa

from common import context, exception, states
from common.db import vm_migrations
from common.db.models import Instance, Migration, utcnow
from nova_conductor.tasks import live_migrate

LOG = logging.getLogger(__name__)

LEAVE = "leave"                    # not stale, or not the conductor's to recover
ROLL_BACK = "roll_back"            # cold move: end it on the source (nothing left it)
REVERT_BACK = "revert_back"        # cold move: the source takes the VM back
REDO_CONFIRM = "redo_confirm"      # a user's confirm, carried out again
REDO_REVERT = "redo_revert"        # a user's revert, carried out again
LIVE_ROLL_BACK = "live_roll_back"  # live move: ended before the copy
LIVE_COMPLETE = "live_complete"    # live move: the guest runs on the destination
DROP = "drop"                      # the VM is deleted: the record ends

COLD = ("resize", "migration")
_COLD_TASKS = (states.RESIZE_PREP, states.RESIZE_MIGRATING, states.RESIZE_FINISH,
               states.RESIZE_REVERTING)


@dataclasses.dataclass(frozen=True)
class Move:
    """What was asked (the migration record) and how long it sat."""
    uuid: str
    instance_id: str
    migration_type: str
    status: str
    source_host: str | None
    dest_host: str | None
    age: float  # seconds since the record's last change


@dataclasses.dataclass(frozen=True)
class Vm:
    """What is (the VM's row); None in plan() when the VM is deleted."""
    host: str | None
    vm_state: str
    task_state: str | None


@dataclasses.dataclass(frozen=True)
class Limits:
    step_timeout: float   # [conductor] move_step_timeout
    interval: float       # [conductor] watchdog_interval
    queue_timeout: float  # [compute] build_timeout: a cast may wait that long for a conductor


def stale_after(migration_type, status, limits):
    """Seconds after which a record in ``status`` has no orchestrator left,
    or None when no conductor waits on a record in that status."""
    margin = limits.step_timeout + limits.interval
    if migration_type not in COLD + ("live-migration",):
        return None  # evacuation: the watchdog and the hosts' reports end it
    if status == "accepted":
        return limits.queue_timeout + margin
    if migration_type in COLD:
        # One call per status, two in post-migrating (finish, then power
        # on) and reverting (destination, then source).
        calls = {"pre-migrating": 1, "migrating": 1, "post-migrating": 2, "confirming": 1,
                 "reverting": 2}.get(status)
        return None if calls is None else calls * limits.step_timeout + margin
    wait = {"pre-migrating": limits.step_timeout, "preparing": live_migrate.PREPARE_TIMEOUT,
                "post-migrating": live_migrate.POST_TIMEOUT}.get(status)
    return None if wait is None else wait + margin


def plan(move, vm, limits):
    """The one thing to do about ``move`` (a Move) of ``vm`` (a Vm, None
    when deleted). Pure."""
    after = stale_after(move.migration_type, move.status, limits)
    if after is None or move.age < after:
        return LEAVE
    if vm is None:
        return DROP
    if move.migration_type in COLD:
        if move.status in ("accepted", "pre-migrating"):
            return ROLL_BACK
        if move.status in ("migrating", "post-migrating"):
            return REVERT_BACK
        if move.status == "confirming":
            return REDO_CONFIRM
        # "reverting": the user's revert (the VM rests RESIZED) or a
        # recovery's own revert back that died in turn.
        return REDO_REVERT if vm.vm_state == states.RESIZED else REVERT_BACK
    if move.status == "post-migrating":
        return LIVE_COMPLETE
    return LIVE_ROLL_BACK


class MoveRecovery:
    def __init__(self, db, migrate_task, live_migration_task, conf):
        self.db = db
        self.migrate_task = migrate_task
        self.live_migration_task = live_migration_task
        self.conf = conf

    @property
    def limits(self):
        return Limits(step_timeout=self.conf.conductor.move_step_timeout,
                      interval=self.conf.conductor.watchdog_interval,
                      queue_timeout=self.conf.compute.build_timeout)

    def run(self, ctxt=None):
        """One pass (a periodic task): {move uuid: what was done} for the
        moves acted on."""
        done = {}
        for move, vm, seen, owner in self._observe():
            step = plan(move, vm, self.limits)
            if step == LEAVE:
                continue
            try:
                if self._claim(move, seen, step):
                    LOG.warning("VM %s: move %s (%s) %s for %.0f s with no conductor "
                                "orchestrating it: %s", move.instance_id, move.uuid,
                                move.migration_type, move.status, move.age, step)
                    self._apply(step, move, owner)
                    done[move.uuid] = step
            except exception.ServiceUnavailable as e:
                LOG.warning("move recovery of %s: %s; next pass", move.uuid, e.message)
            except Exception:
                LOG.exception("move recovery of %s (%s) failed", move.uuid, step)
        return done

    def _observe(self):
        now = utcnow()
        with self.db.transaction() as s:
            rows = s.execute(
                sa.select(Migration.uuid, Migration.instance_id, Migration.migration_type,
                          Migration.status, Migration.source_host, Migration.dest_host,
                          Migration.updated_at, Migration.request_id, Instance.host,
                          Instance.vm_state, Instance.task_state, Instance.project_id,
                          Instance.user_id, Instance.deleted_at)
                .select_from(Migration).outerjoin(Instance, Instance.id == Migration.instance_id)
                .where(vm_migrations.IN_PROGRESS)).all()
        for r in rows:
            move = Move(r.uuid, r.instance_id, r.migration_type, r.status, r.source_host,
                        r.dest_host, (now - r.updated_at).total_seconds())
            live = r.vm_state is not None and r.deleted_at is None
            vm = Vm(r.host, r.vm_state, r.task_state) if live else None
            owner = context.RequestContext(request_id=r.request_id, project_id=r.project_id,
                                           user_id=r.user_id, is_admin=True, roles=["admin"])
            yield move, vm, r.updated_at, owner

    def _claim(self, move, seen, step):
        """The record taken from its dead orchestrator: one conductor wins."""
        try:
            return self._take(move, seen, step)
        except _Undo:
            return False

    def _take(self, move, seen, step):
        new_status = "reverting" if step == REVERT_BACK else move.status
        values = {"status": new_status} if step != DROP else {"status": "error"}
        with self.db.transaction() as s:
            result = s.execute(
                sa.update(Migration)
                .where(Migration.uuid == move.uuid, Migration.status == move.status,
                       Migration.updated_at == seen)
                .values(dict(values, updated_at=utcnow()))
                .execution_options(synchronize_session=False))
            if result.rowcount != 1:
                return False
            if step == REVERT_BACK and s.execute(
                    sa.update(Instance)
                    .where(Instance.id == move.instance_id, Instance.deleted_at.is_(None),
                           Instance.task_state.in_(_COLD_TASKS))
                    .values(task_state=states.RESIZE_REVERTING)
                    .execution_options(synchronize_session=False)).rowcount != 1:
                raise _Undo()  # e.g. being deleted: the delete ends it
        return True

    def _apply(self, step, move, ctxt):
        reason = ("its conductor went away during %s (no progress for %.0f s)"
                  % (move.status, move.age))
        if step == ROLL_BACK:
            self.migrate_task.recover_roll_back(ctxt, move.instance_id, move.uuid, reason)
        elif step == REVERT_BACK:
            self.migrate_task.recover_revert_back(ctxt, move.instance_id, move.uuid, reason)
        elif step == REDO_CONFIRM:
            self.migrate_task.confirm_resize(ctxt, move.instance_id, move.uuid)
        elif step == REDO_REVERT:
            self.migrate_task.revert_resize(ctxt, move.instance_id, move.uuid)
        elif step == LIVE_ROLL_BACK:
            self.live_migration_task.recover_roll_back(ctxt, move.instance_id, move.uuid,
                                                       move.dest_host, reason)
        elif step == LIVE_COMPLETE:
            self.live_migration_task.complete(ctxt, move.instance_id, move.uuid)


class _Undo(Exception):
    """Rolls back a claim of a VM that moved on meanwhile."""
