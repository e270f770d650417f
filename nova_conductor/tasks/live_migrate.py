"""A live migration, as Nova's LiveMigrationTask and the compute manager's
_post_live_migration / _rollback_live_migration run it, the hosts' steps
orchestrated from here (computes never call one another).

The API has moved the VM to ``migrating`` (a guarded UPDATE) and stored its
migration record ("accepted", type "live-migration", the source host); then:

1. the scheduler claims the destination (the admin's host, checked by the
   same filters, or its choice; never the source): the VM's allocation
   moves to the destination, the record's uuid holds the source ("pre-migrating");
2. the destination prepares (call ``pre_live_migration``: base image, empty
   overlay, config drive) and answers the source's migrate_data ("preparing");
3. the source copies memory and disk while the guest runs (cast
   ``live_migration``, "running"), casting its progress here, and reports
   the outcome with a call;
4. success: the destination makes the domain its own (call
   ``post_live_migration_at_destination``), the VM's host becomes the
   destination, the record "completed", the source's allocation freed;
   failure or abort: the guest still runs on the source, the destination
   removes what arrived (cast ``rollback_live_migration_at_destination``),
   its allocation is freed and the source's handed back to the VM, the
   record "error" or "cancelled", the VM ACTIVE (or PAUSED) as before.

Each step is a conditional update on the record's status, so a repeated
message (RPC is at-least-once) or a late report changes nothing twice.
"""
import logging

from common import context, exception, payloads, states
from common.db import actions, allocations, vm_migrations
from common.db import api as db_api
from common.db.models import utcnow

LOG = logging.getLogger(__name__)

# How long the destination may take to prepare (image download included) and
# to settle the arrived domain.
PREPARE_TIMEOUT = 600
POST_TIMEOUT = 120

PROGRESS_COLUMNS = ("memory_total", "memory_processed", "memory_remaining",
                    "disk_total", "disk_processed", "disk_remaining")


class LiveMigrationTask:
    def __init__(self, db, scheduler_rpcapi, compute_rpcapi, timeline):
        self.db = db
        self.scheduler_rpcapi = scheduler_rpcapi
        self.compute_rpcapi = compute_rpcapi
        self.timeline = timeline

    # -- 1 and 2: placement and preparation (from the API's cast) ---------------------

    def execute(self, ctxt, instance_id, migration_uuid, host=None):
        """Place, prepare and start the migration; the destination, or None
        when it ended here (no valid host, preparation failed, the move no
        longer waits)."""
        with self.db.transaction() as s:
            move = vm_migrations.in_progress_by_uuid(s, migration_uuid)
            if move is None or move.status != "accepted":
                LOG.info("VM %s: live migration %s is not waiting to start (%s)", instance_id,
                         migration_uuid, move.status if move else "ended or unknown")
                return None
            inst = db_api.instance_row(s, instance_id)
            image = _image(s, inst.image_id) if inst is not None else None
        source = move.source_host
        try:
            with self.timeline.step(ctxt, instance_id, "live-migration destination") as step:
                dest = self.scheduler_rpcapi.select_move_destination(
                    ctxt, instance_id, migration_uuid, requested_host=host)
                step.details = dest
        except (exception.NoValidHost, exception.InstanceNotFound,
                exception.MigrationNotFound) as exc:
            self._end(ctxt, instance_id, migration_uuid, "error", exc.message, source=source)
            return None
        if dest is None:
            return None
        if not self._set_status(migration_uuid, "pre-migrating", "preparing"):
            return None
        try:
            if image is None:
                raise exception.ImageNotFound(image=inst.image_id if inst else "?")
            with self.timeline.step(ctxt, instance_id, "live-migration prepared", dest):
                migrate_data = self.compute_rpcapi.pre_live_migration(
                    ctxt, dest, instance_id, migration_uuid, image, PREPARE_TIMEOUT)
        except Exception as exc:  # nothing is left on the destination (driver post)
            self._rollback(ctxt, instance_id, migration_uuid, dest, exception.describe(exc))
            return None
        if not self._set_status(migration_uuid, "preparing", "running"):
            return None
        self.timeline.record(ctxt, instance_id, "live-migration started",
                             details="%s -> %s" % (source, dest))
        self.compute_rpcapi.live_migration(ctxt, source, instance_id, migration_uuid, dest,
                                           migrate_data)
        return dest

    # -- 3 and 4: the source's reports -----------------------------------------------

    def progress(self, ctxt, instance_id, migration_uuid, progress):
        """The copy's progress on the record, whatever its status: the last
        report (a cast) may arrive after the outcome (a call), and still
        tells how far the copy got."""
        values = {k: progress.get(k) for k in PROGRESS_COLUMNS if progress.get(k) is not None}
        if not values:
            return False
        with self.db.transaction() as s:
            return vm_migrations.update_if(s, migration_uuid, values)

    def succeeded(self, ctxt, instance_id, migration_uuid, host):
        """The guest runs on the destination: the VM is its."""
        with self.db.transaction() as s:
            move = vm_migrations.in_progress_by_uuid(s, migration_uuid)
            if move is None or move.source_host != host:
                return False
            ctxt = _of_action(ctxt, s, migration_uuid)
            if not vm_migrations.update_if(s, migration_uuid, {"status": "post-migrating"},
                                           expected_status=("running",)):
                return False
        return self.complete(ctxt, instance_id, migration_uuid)

    def complete(self, ctxt, instance_id, migration_uuid):
        """The move "post-migrating" (the guest left the source): the
        destination settles it, the VM is its. Also the recovery's, when the
        conductor that heard the success died before this ended."""
        with self.db.transaction() as s:
            move = vm_migrations.in_progress_by_uuid(s, migration_uuid)
            if move is None or move.status != "post-migrating":
                return False
        host = move.source_host
        dest = move.dest_host
        power_state = states.RUNNING
        try:
            with self.timeline.step(ctxt, instance_id, "live-migration settled", dest):
                power_state = self.compute_rpcapi.post_live_migration_at_destination(
                    ctxt, dest, instance_id, migration_uuid, POST_TIMEOUT)
        except Exception as exc:  # the guest runs there all the same (persistent there)
            LOG.error("VM %s: destination %s did not settle it: %s; it runs there",
                      instance_id, dest, exception.describe(exc))
        with self.db.transaction() as s:
            inst = db_api.instance_row(s, instance_id)
            # A delete that came after the copy: the VM is on the destination
            # now, and deleted there.
            deleting = inst is not None and inst.task_state == states.DELETING
            values = {"host": dest, "power_state": power_state}
            if inst is not None and not deleting:
                values.update(task_state=None,
                              vm_state=states.vm_state_for_power(inst.vm_state, power_state))
            db_api.instance_update_if(s, instance_id, values,
                                      expected_task_state=(states.MIGRATING, states.DELETING))
            vm_migrations.update_if(s, migration_uuid, {"status": "completed"},
                                    expected_status=("post-migrating",))
            allocations.release(s, migration_uuid)  # the source's
            _finish(s, ctxt, migration_uuid, instance_id, "live-migration completed", dest,
                    actions.SUCCESS)
        LOG.info("VM %s live-migrated from %s to %s", instance_id, host, dest)
        if deleting:
            self.compute_rpcapi.terminate_instance(ctxt, dest, instance_id)
        return True

    def failed(self, ctxt, instance_id, migration_uuid, host, reason, aborted=False):
        """The copy failed or was aborted: the guest still runs on the source."""
        with self.db.transaction() as s:
            move = vm_migrations.in_progress_by_uuid(s, migration_uuid)
            if move is None or move.source_host != host:
                return False
            ctxt = _of_action(ctxt, s, migration_uuid)
        return self._rollback(ctxt, instance_id, migration_uuid, move.dest_host, reason,
                              status="cancelled" if aborted else "error")

    def recover_roll_back(self, ctxt, instance_id, migration_uuid, dest, reason):
        """The recovery's: the move ended before the copy started."""
        if dest is None:
            return self._end(ctxt, instance_id, migration_uuid, "error", reason)
        return self._rollback(ctxt, instance_id, migration_uuid, dest, reason)

    # -- helpers ------------------------------------------------------------------

    def _set_status(self, migration_uuid, expected, status):
        with self.db.transaction() as s:
            return vm_migrations.update_if(s, migration_uuid, {"status": status},
                                           expected_status=(expected,))

    def _rollback(self, ctxt, instance_id, migration_uuid, dest, reason, status="error"):
        """End the move where it began; the destination cleans up."""
        if not self._end(ctxt, instance_id, migration_uuid, status, reason, dest=dest):
            return False
        try:
            self.compute_rpcapi.rollback_live_migration_at_destination(
                ctxt, dest, instance_id, migration_uuid)
        except Exception as exc:  # e.g. the broker away: the audit finds the leftover
            LOG.error("VM %s: rollback on %s not sent: %s", instance_id, dest,
                      exception.describe(exc))
        return True

    def _end(self, ctxt, instance_id, migration_uuid, status, reason, source=None, dest=None):
        """The record ``status`` (from any status in progress), the VM back
        on its source without a task, its allocations as before the move."""
        with self.db.transaction() as s:
            if not vm_migrations.update_if(
                    s, migration_uuid, {"status": status},
                    expected_status=("accepted", "pre-migrating", "preparing", "running",
                                     "post-migrating")):
                return False
            if dest is not None:
                allocations.release_on_host(s, instance_id, dest)
            if allocations.holds_any(s, migration_uuid):
                allocations.move_allocations(s, migration_uuid, instance_id)
            db_api.instance_update_if(s, instance_id, {"task_state": None},
                                      expected_task_state=states.MIGRATING)
            _finish(s, ctxt, migration_uuid, instance_id, "live-migration %s" % status,
                    dest or source, actions.ERROR, reason)
        LOG.warning("VM %s: live migration %s %s: %s", instance_id, migration_uuid, status,
                    reason)
        return True


def _image(s, image_id):
    """The VM's image for the destination's cache, or None when it is gone
    from the store (then there is no base to copy the overlay onto)."""
    try:
        return payloads.image(db_api.image_get(s, image_id))
    except exception.ImageNotFound:
        return None


def _finish(s, ctxt, migration_uuid, instance_id, event, host, result, details=None):
    """Record ``event`` on the live migration's own action (the request that
    started it, kept on the record: a delete may have opened a newer one,
    and a host's report after its restart carries a request id of its own)
    and finish it."""
    request_id = vm_migrations.get(s, migration_uuid).request_id or ctxt.request_id
    action_id = actions.action_id(s, instance_id, request_id)
    if action_id is None:
        return
    now = utcnow()
    actions.events_add(s, action_id, [{"event": event, "host": host, "start_time": now,
                                       "finish_time": now, "result": result,
                                       "details": details}])
    actions.action_finish_by_id(s, action_id, instance_id, result,
                                details if result == actions.ERROR else None, now)


def _of_action(ctxt, s, migration_uuid):
    """``ctxt`` with the request id of the action that started the move (a
    host reporting after its restart sends one of its own): the steps that
    follow are recorded there."""
    request_id = vm_migrations.get(s, migration_uuid).request_id
    if not request_id or request_id == ctxt.request_id:
        return ctxt
    return context.RequestContext.from_dict(dict(ctxt.to_dict(), request_id=request_id))
