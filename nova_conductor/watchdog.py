"""The conductor's watchdog: VMs whose request went nowhere.

RPC is at-least-once and every daemon retries, yet some requests can still
stall for good: a host accepts a build and goes silent (its driver hangs, it
is SIGSTOPped, its network is cut), a host dies with a delete queued for it,
a message is dead-lettered after a long outage. Nothing would ever move such
a VM on, so every ``[conductor] watchdog_interval`` seconds each conductor
looks at the VMs with a task in progress:

- building (``scheduling`` or ``spawning``) for longer than ``[compute]
  build_timeout`` since the last state change: ERROR, with a fault naming the
  host and the timeout, and its allocations released. One conditional UPDATE that
  also matches the ``updated_at`` it saw, so a VM that moved on meanwhile
  (spawned, rescheduled, deleted) is left alone and a late "spawned" report
  (conditional on ``spawning`` too) loses. The row keeps its host: that host
  destroys what a late build leaves (compute does so when its "spawned"
  report is refused, and at start-up and periodically for the failed builds
  of its host), and a delete still goes there;
- still ``scheduling`` after ``[conductor] task_resend_after``: its
  build_instances is sent again (idempotent; in case it was lost), at most
  every ``task_resend_after`` and ``MAX_RESENDS`` times per conductor;
- ``deleting`` on a host that is down (no heartbeat for ``[scheduler]
  service_down_time``) or on no host: deleted locally, as Nova's API does:
  row soft-deleted, allocations and quota released. The host's queued
  terminate_instance, or its reconcile loop (``[compute] reap_orphans``),
  removes the domain when it comes back;
- ``deleting`` on a live host after ``task_resend_after``: terminate_instance
  is sent again (idempotent; same limits), e.g. when the API's cast was lost
  to a broker outage;
- ``rebuilding`` with an evacuation still "accepted" (no conductor placed
  it) for longer than ``[compute] build_timeout``: given up, nothing having
  been claimed: the VM keeps its state and host with a fault, the migration
  "error" (a conditional UPDATE of both, so a placement that won meanwhile
  is left alone). The admin evacuates again.

A resend that finds the broker away ends the resends of that pass; the
database work (timeouts, local deletes) goes on.

Several conductors may run it at once: every change is conditional, and a
duplicate resend is harmless.
"""
import logging
import time

import sqlalchemy as sa

from common import context, exception, metrics, states
from common.db import actions, allocations, vm_migrations
from common.db import api as db_api
from common.db.models import Instance, Service, utcnow

LOG = logging.getLogger(__name__)

COMPUTE_BINARY = "mininova-compute"
_BUILDING_TASKS = (states.SCHEDULING, states.SPAWNING)
# A host that heartbeats but is wedged on a VM would otherwise collect a
# blocked terminate per resend.
MAX_RESENDS = 3


class Watchdog:
    def __init__(self, db, conductor_rpcapi, compute_rpcapi, conf):
        """``conductor_rpcapi``: resent builds go to any conductor (a cast),
        so a pass never waits on the scheduler."""
        self.db = db
        self.conductor_rpcapi = conductor_rpcapi
        self.compute_rpcapi = compute_rpcapi
        self.conf = conf
        # (instance id, task) -> (resends, time.monotonic() of the last one)
        self._resent = {}
        self._broker_away = False

    # -- the periodic task ---------------------------------------------------

    def run(self, ctxt=None):
        """One pass. Returns what it did: {"expired", "deleted", "resent"} ->
        [instance ids] (for logs and tests)."""
        done = {"expired": [], "deleted": [], "resent": []}
        self._broker_away = False
        now = utcnow()
        with self.db.transaction() as s:
            rows = s.execute(
                sa.select(Instance.id, Instance.host, Instance.vm_state, Instance.task_state,
                          Instance.updated_at, Instance.project_id, Instance.user_id)
                .where(Instance.deleted_at.is_(None),
                       Instance.task_state.in_(_BUILDING_TASKS + (
                           states.DELETING, states.REBUILDING)))).all()
            heartbeats = dict(s.execute(
                sa.select(Service.host, Service.last_heartbeat)
                .where(Service.binary == COMPUTE_BINARY)).all())
        for row in rows:
            try:
                if row.task_state == states.DELETING:
                    self._check_delete(row, now, heartbeats, done)
                elif row.task_state == states.REBUILDING:
                    if self._expire_evacuation(row, now):
                        done["expired"].append(row.id)
                elif row.vm_state == states.BUILDING:
                    self._check_build(row, now, done)
            except exception.ServiceUnavailable as e:
                if "broker" not in e.message:
                    raise  # the database is away: next pass
                LOG.warning("watchdog: %s; no more resends in this pass", e.message)
                self._broker_away = True
            except Exception:
                LOG.exception("watchdog: VM %s (%s/%s) could not be checked", row.id,
                              row.vm_state, row.task_state)
        live = {(row.id, row.task_state) for row in rows}
        for key in list(self._resent):
            if key not in live:
                del self._resent[key]
        return done

    # -- builds --------------------------------------------------------------

    def _check_build(self, row, now, done):
        age = (now - row.updated_at).total_seconds()
        timeout = self.conf.compute.build_timeout
        if age >= timeout:
            if self._expire_build(row, now, timeout):
                done["expired"].append(row.id)
        elif (row.task_state == states.SCHEDULING
              and age >= self.conf.conductor.task_resend_after and self._due(row)):
            LOG.warning("VM %s still scheduling after %.0f s; sending build_instances "
                        "again", row.id, age)
            self.conductor_rpcapi.build_instances(self._context(row), row.id)
            self._sent(row)
            done["resent"].append(row.id)

    def _expire_build(self, row, now, timeout):
        if row.task_state == states.SPAWNING:
            fault = ("Build timed out: host %s did not finish building the VM within %d s "
                     "([compute] build_timeout); the host took the build and went silent."
                     % (row.host, timeout))
        else:
            fault = ("Build timed out: no scheduler placed the VM within %d s "
                     "([compute] build_timeout)." % timeout)
        with self.db.transaction() as s:
            result = s.execute(
                sa.update(Instance)
                .where(Instance.id == row.id, Instance.deleted_at.is_(None),
                       Instance.vm_state == states.BUILDING,
                       Instance.task_state == row.task_state,
                       Instance.updated_at == row.updated_at,
                       Instance.host.is_(None) if row.host is None else Instance.host == row.host)
                .values(vm_state=states.ERROR, task_state=None, power_state=states.NOSTATE,
                        fault=fault, updated_at=now)
                .execution_options(synchronize_session=False))
            if result.rowcount != 1:
                return False  # it moved on meanwhile: not stuck
            released = allocations.release(s, row.id)
            self._finish_action(s, row.id, "build timed out", actions.ERROR, fault)
        LOG.warning("VM %s: %s%s", row.id, fault, " Allocations released." if released else "")
        metrics.build_finished("timed_out")
        return True

    # -- evacuations -----------------------------------------------------------

    def _expire_evacuation(self, row, now):
        timeout = self.conf.compute.build_timeout
        if (now - row.updated_at).total_seconds() < timeout:
            return False
        fault = ("Evacuation timed out: no conductor placed the VM within %d s "
                 "([compute] build_timeout); nothing was moved." % timeout)
        try:
            with self.db.transaction() as s:
                move = vm_migrations.in_progress_for_instance(s, row.id)
                if (move is None or move.migration_type != "evacuation"
                        or not vm_migrations.update_if(s, move.uuid, {"status": "error"},
                                                       expected_status=("accepted",))):
                    return False  # a plain rebuild, or placed meanwhile
                if not db_api.instance_update_if(
                        s, row.id, {"task_state": None, "fault": fault},
                        expected_task_state=states.REBUILDING, expected_host=row.host):
                    raise _Undo()
                self._finish_action(s, row.id, "evacuation timed out", actions.ERROR, fault)
        except _Undo:
            return False
        LOG.warning("VM %s: %s", row.id, fault)
        return True

    # -- deletes -------------------------------------------------------------

    def _check_delete(self, row, now, heartbeats, done):
        down_after = self.conf.scheduler.service_down_time
        last = heartbeats.get(row.host) if row.host is not None else None
        host_up = last is not None and (now - last).total_seconds() <= down_after
        if not host_up:
            why = ("its host %s is down (no heartbeat for %d s)" % (row.host, down_after)
                   if row.host is not None else "it is on no host")
            with self.db.transaction() as s:
                deleted = db_api.instance_soft_delete(s, row.id,
                                                      expected_task_state=states.DELETING,
                                                      expected_host=row.host)
                if deleted:
                    self._finish_action(s, row.id, "deleted locally", actions.SUCCESS,
                                        "Deleted locally: %s." % why)
            if deleted:
                LOG.warning("VM %s deleted locally: %s; its domain goes when the host "
                            "comes back", row.id, why)
                done["deleted"].append(row.id)
            return
        age = (now - row.updated_at).total_seconds()
        if age >= self.conf.conductor.task_resend_after and self._due(row):
            LOG.warning("VM %s still deleting on %s after %.0f s; sending "
                        "terminate_instance again", row.id, row.host, age)
            self.compute_rpcapi.terminate_instance(self._context(row), row.host, row.id)
            self._sent(row)
            done["resent"].append(row.id)

    # -- helpers -------------------------------------------------------------

    def _due(self, row):
        """Whether to send this VM's request again now (per scheduler: at most
        every task_resend_after, MAX_RESENDS times, not while the broker is away)."""
        if self._broker_away:
            return False
        count, last = self._resent.get((row.id, row.task_state), (0, None))
        if count >= MAX_RESENDS:
            if count == MAX_RESENDS:
                LOG.error("VM %s still %s after %d resends; giving up resending it",
                          row.id, row.task_state, MAX_RESENDS)
                self._resent[(row.id, row.task_state)] = (count + 1, last)
            return False
        return last is None or time.monotonic() - last >= self.conf.conductor.task_resend_after

    def _sent(self, row):
        count, _ = self._resent.get((row.id, row.task_state), (0, None))
        self._resent[(row.id, row.task_state)] = (count + 1, time.monotonic())

    def _context(self, row):
        with self.db.transaction() as s:
            action = actions.open_action(s, row.id)
            request_id = action.request_id if action is not None else None
        return context.RequestContext(request_id=request_id, project_id=row.project_id,
                                      user_id=row.user_id)

    def _finish_action(self, s, instance_id, event, result, details):
        """Record ``event`` on the stalled action and finish it, in ``s``."""
        actions.finish_open_action(s, instance_id, event, self.conf.host, result, details)


class _Undo(Exception):
    """Rolls back a give-up that lost to the VM's own progress."""
