"""Evacuation of a VM whose host is down (Nova's rebuild_instance with
``evacuate``), and the reports of its two ends.

The API has moved the VM to ``rebuilding`` and written its migration record
("evacuation", source = the dead host, "accepted"), then casts here. The
task asks the scheduler for a destination (``select_move_destination``: the
record takes over the source's allocation, the VM allocates the
destination), moves the row to the destination in ``rebuild_spawning`` and
casts ``evacuate_instance`` there, which rebuilds the VM from its image.

- done (the destination reports it running): the VM rests there as its
  power says; the record is "done", still holding the source's allocation
  until the source, back up, destroys its stale copy ("completed"): a host
  that comes back must not run the VM beside its new copy, nor be counted
  free before that copy is gone.
- failed on the destination (which cleaned up): the VM goes back to its
  source in ERROR with the fault, its allocation there again, the
  destination's freed; the record "failed". If the source already destroyed
  its copy meanwhile, the VM stays in ERROR on the destination (which keeps
  its allocation), to be rebuilt there.
- no host, or no image: nothing moved; the VM keeps its state with the
  fault, the record "error".
"""
import logging

from common import exception, payloads, states
from common.db import actions, allocations, vm_migrations
from common.db import api as db_api
from common.db import images as db_images

LOG = logging.getLogger(__name__)


class EvacuateTask:
    def __init__(self, db, scheduler_rpcapi, compute_rpcapi, timeline, host="conductor"):
        """``scheduler_rpcapi`` and ``compute_rpcapi`` may be None where this
        only takes the compute hosts' reports."""
        self.db = db
        self.scheduler_rpcapi = scheduler_rpcapi
        self.compute_rpcapi = compute_rpcapi
        self.timeline = timeline
        self.host = host

    # -- the task --------------------------------------------------------------

    def evacuate(self, ctxt, instance_id, migration_uuid, requested_host=None):
        """Place the evacuated VM and cast its rebuild; the destination, or
        None (nothing to do, or the evacuation ended here)."""
        with self.db.transaction() as s:
            inst = db_api.instance_row(s, instance_id)
            move = vm_migrations.in_progress_by_uuid(s, migration_uuid)
            if inst is None or move is None:
                LOG.info("VM %s: evacuation %s is over (VM %s)", instance_id, migration_uuid,
                         "gone" if inst is None else "still here")
                return None
            if inst.task_state == states.REBUILD_SPAWNING and inst.host == move.dest_host:
                dest = move.dest_host  # a redelivered cast: send the rebuild again
            elif inst.task_state != states.REBUILDING:
                LOG.info("VM %s is %s/%s; not evacuating", instance_id, inst.vm_state,
                         inst.task_state)
                return None
            else:
                dest = None
            image_row = db_images.image_row(s, inst.image_id)
            source = move.source_host
        if image_row is None:
            return self._not_moved(ctxt, instance_id, migration_uuid, "image unavailable",
                                   "image %s is gone: the VM cannot be rebuilt elsewhere"
                                   % inst.image_id)
        image = payloads.image(image_row)
        if not self.compute_rpcapi.can_evacuate:  # before anything is claimed
            return self._not_moved(ctxt, instance_id, migration_uuid, "not sent",
                                   "the compute hosts are not all upgraded to take an "
                                   "evacuation yet ([upgrade_levels] compute)")
        if dest is None:
            try:
                dest = self.scheduler_rpcapi.select_move_destination(
                    ctxt, instance_id, migration_uuid, requested_host)
            except exception.InstanceNotFound:
                return None
            except (exception.NoValidHost, exception.MigrationNotFound) as e:
                return self._not_moved(ctxt, instance_id, migration_uuid, "no valid host",
                                       e.message)
            if dest is None:
                return None
            if not self._move_row(ctxt, instance_id, migration_uuid, source, dest):
                return None
        self.timeline.record(ctxt, instance_id, "rebuild sent", details="to compute.%s" % dest)
        # A broker away raises: this cast comes back and sends it again (above).
        self.compute_rpcapi.evacuate_instance(ctxt, dest, instance_id, image, migration_uuid)
        return dest

    def _move_row(self, ctxt, instance_id, migration_uuid, source, dest):
        """The VM's row to ``dest`` in rebuild_spawning; False (and what the
        claim holds freed) when the VM left ``rebuilding`` meanwhile."""
        with self.db.transaction() as s:
            moved = db_api.instance_update_if(
                s, instance_id, {"host": dest, "task_state": states.REBUILD_SPAWNING},
                expected_task_state=states.REBUILDING, expected_host=source)
            if not moved:
                if db_api.instance_row(s, instance_id) is None:  # deleted meanwhile
                    allocations.release_instance(s, instance_id)
                vm_migrations.update_if(s, migration_uuid, {"status": "cancelled"})
        if moved:
            LOG.info("VM %s: evacuating from %s to %s", instance_id, source, dest)
            self.timeline.record(ctxt, instance_id, "scheduled", details="on host %s" % dest)
        else:
            LOG.info("VM %s left rebuilding before its evacuation to %s", instance_id, dest)
        return moved

    def _not_moved(self, ctxt, instance_id, migration_uuid, event, fault):
        """Nothing moved: the VM keeps its vm_state and host, with the fault."""
        with self.db.transaction() as s:
            vm_migrations.update_if(s, migration_uuid, {"status": "error"})
            ended = db_api.instance_update_if(s, instance_id, {"task_state": None,
                                                               "fault": fault},
                                              expected_task_state=states.REBUILDING)
            if ended:
                actions.finish_open_action(s, instance_id, event, self.host, actions.ERROR,
                                           fault)
        LOG.warning("VM %s not evacuated: %s", instance_id, fault)
        return None

    # -- reports of the destination ------------------------------------------

    def done(self, ctxt, instance_id, host, migration_uuid, power_state):
        """The VM runs (or rests stopped) on ``host``, its destination."""
        with self.db.transaction() as s:
            done = db_api.instance_update_if(
                s, instance_id,
                {"vm_state": states.task_result(states.REBUILDING, power_state),
                 "task_state": None, "power_state": power_state, "fault": None},
                expected_task_state=states.REBUILD_SPAWNING, expected_host=host)
            if not done:
                return False
            # The source cleaned its copy already (it came back meanwhile): complete.
            cleaned = not allocations.holds_any(s, migration_uuid)
            vm_migrations.update_if(s, migration_uuid, {
                "status": "completed" if cleaned else states.EVACUATION_DONE})
            actions.finish_open_action(s, instance_id, "evacuated", host, actions.SUCCESS,
                                       "rebuilt on %s, power %s" % (host, power_state))
        LOG.info("VM %s evacuated to %s (power %s)", instance_id, host, power_state)
        return True

    def failed(self, ctxt, instance_id, host, migration_uuid, reason):
        """The rebuild failed on ``host``, which destroyed what it made."""
        with self.db.transaction() as s:
            move = vm_migrations.get(s, migration_uuid)
            source_kept = allocations.holds_any(s, migration_uuid)
            back_to = move.source_host if source_kept else host
            fault = "Evacuation to %s failed: %s" % (host, reason)
            done = db_api.instance_update_if(
                s, instance_id, {"vm_state": states.ERROR, "task_state": None,
                                 "power_state": states.NOSTATE, "fault": fault,
                                 "host": back_to},
                expected_task_state=states.REBUILD_SPAWNING, expected_host=host)
            if not done:
                return False
            if source_kept:
                allocations.release_on_host(s, instance_id, host)
                allocations.move_allocations(s, migration_uuid, instance_id)
            vm_migrations.update_if(s, migration_uuid, {"status": "failed"})
            actions.finish_open_action(s, instance_id, "evacuation failed", host,
                                       actions.ERROR, fault)
        LOG.warning("VM %s: %s; VM in ERROR on %s", instance_id, fault, back_to)
        return True

    # -- the source, back up ---------------------------------------------------

    def to_clean(self, ctxt, host):
        """The evacuations away from ``host`` whose copy there may remain:
        [{"uuid", "instance_id", "status", "host"}] (``host``: where the VM's
        row is now, None if it is gone)."""
        with self.db.transaction() as s:
            result = []
            for move in vm_migrations.evacuations_to_clean(s, host):
                inst = db_api.instance_row(s, move.instance_id)
                result.append({"uuid": move.uuid, "instance_id": move.instance_id,
                               "status": move.status,
                               "host": inst.host if inst is not None else None})
            return result

    def source_cleaned(self, ctxt, migration_uuid, host):
        """``host``, the evacuation's source, destroyed its copy: the
        record's allocation there is freed; a "done" evacuation (or one
        whose VM is gone) is "completed". True if the record changed."""
        with self.db.transaction() as s:
            move = vm_migrations.get(s, migration_uuid)
            if move.source_host != host:
                return False
            freed = allocations.release_on_host(s, migration_uuid, host)
            gone = db_api.instance_row(s, move.instance_id) is None
            completed = vm_migrations.update_if(
                s, migration_uuid, {"status": "completed"},
                expected_status=(states.EVACUATION_DONE,) + (
                    ("accepted", "pre-migrating") if gone else ()))
        LOG.info("VM %s: its stale copy on %s is gone (allocation %s, evacuation %s)",
                 move.instance_id, host, "freed" if freed else "already free",
                 "completed" if completed else move.status)
        return freed or completed
