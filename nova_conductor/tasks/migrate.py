"""Resize and cold migration, as Nova's MigrationTask and its compute steps
run them, with the conductor as the one writer of every state change.

The API guards the VM into ``resize_prep``, writes the new flavor to its row
(the quota counts it from then on), creates the migration record
("accepted") and casts ``migrate_server`` here. Then:

1. the scheduler hands the VM's source allocation to the migration record
   (its consumer) and claims a destination for the new flavor for the VM
   itself (``select_move_destination``: one atomic claim, as a build's;
   the source is a candidate only for a resize with [compute]
   allow_resize_to_same_host); the migration goes "pre-migrating";
2. ``prep_resize`` on the destination (checks, the image cached);
3. ``resize_instance`` on the source (``migrating``): the domain powered off,
   its disk set aside -> ``disk_info``;
4. ``finish_resize`` on the destination (``post-migrating``): the domain
   defined there, shut off, with the new flavor on that disk; then the VM is
   the destination's (its row's host), and a second ``finish_resize`` starts
   it there if it ran (so that a destination dying mid-step never leaves a
   running copy beside the one the source takes back);
5. the VM rests in ``resized`` (VERIFY_RESIZE) on the destination, the
   migration "finished"; both allocations are held until confirm or revert.

A step that fails, or a host that does not answer within ``[conductor]
move_step_timeout``, rolls the move back: the VM is defined again on the
source with its old flavor (the disk set aside there), the destination's
allocation is freed and the source's given back to the VM, its old flavor
and quota restored, the migration "error". Only when the source itself fails
after its disk was set aside does the VM end in ERROR with a fault (never
two running copies: the destination's copy is made only after the source's
domain is off, and is destroyed or never made on every failure path).

Every step is a call of a compute host with the request's context: its
timed steps land in the action of the request that started the move.
"""
import datetime
import logging

from common import context, exception, states
from common.db import allocations, auth, vm_migrations
from common.db import api as db_api
from common.db import images as db_images
from common import payloads
from common.db.models import utcnow

LOG = logging.getLogger(__name__)


class MoveGivenUp(Exception):
    """The VM left the move's state (deleted, given up): stop here."""


class MigrateTask:
    def __init__(self, db, scheduler_rpcapi, compute_rpcapi, timeline, conf):
        self.db = db
        self.scheduler = scheduler_rpcapi
        self.compute = compute_rpcapi
        self.timeline = timeline
        self.conf = conf

    @property
    def timeout(self):
        return self.conf.conductor.move_step_timeout

    # -- resize / cold migrate ---------------------------------------------------

    def migrate_server(self, ctxt, instance_id, migration_uuid, target_host=None):
        with self.db.transaction() as s:
            migration = vm_migrations.get(s, migration_uuid)
            inst = db_api.instance_row(s, instance_id)
            if (inst is None or migration.status != "accepted"
                    or inst.task_state != states.RESIZE_PREP):
                LOG.info("VM %s: move %s not waiting to start (%s); nothing to do",
                         instance_id, migration_uuid, migration.status)
                return None
            new = {"vcpus": inst.vcpus, "memory_mb": inst.memory_mb, "root_gb": inst.root_gb}
            old = _old_sizes(s, migration)
            was_running = inst.power_state == states.RUNNING
            image = db_images.image_row(s, inst.image_id)
            image = payloads.image(image) if image is not None else None
        source = migration.source_host
        same_host = (self.conf.compute.allow_resize_to_same_host
                     and migration.migration_type == "resize")
        try:
            dest = self.scheduler.select_move_destination(
                ctxt, instance_id, migration_uuid, requested_host=target_host,
                allow_source=same_host)
        except (exception.NoValidHost, exception.InstanceNotFound,
                exception.MigrationNotFound, exception.ServiceUnavailable) as e:
            return self._roll_back(ctxt, instance_id, migration_uuid, old, "no valid host", e)
        if dest is None:
            return None
        self.timeline.record(ctxt, instance_id, "scheduled", details="on host %s" % dest)
        try:
            if image is None:
                raise exception.ImageNotFound(image=inst.image_id)
            self.compute.prep_resize(ctxt, dest, instance_id, migration_uuid, image,
                                     self.timeout)
            self._advance(instance_id, migration_uuid, "pre-migrating", "migrating",
                          states.RESIZE_PREP, states.RESIZE_MIGRATING)
        except MoveGivenUp:
            return self._given_up(ctxt, instance_id, migration_uuid, (dest,))
        except Exception as e:
            return self._roll_back(ctxt, instance_id, migration_uuid, old, "prep_resize", e)
        try:
            disk_info = self.compute.resize_instance(ctxt, source, instance_id, migration_uuid,
                                                     self.timeout)
        except Exception as e:
            # The source may have powered the VM off and set its disk
            # aside: it takes it back itself, if it answers.
            return self._roll_back(ctxt, instance_id, migration_uuid, old, "resize_instance",
                                   e, revert_source=True, power_on=was_running)
        try:
            self._advance(instance_id, migration_uuid, "migrating", "post-migrating",
                          states.RESIZE_MIGRATING, states.RESIZE_FINISH)
            # Defined there shut off: a destination that dies now leaves at
            # most a stopped copy, so the source may take the VM back.
            power = self.compute.finish_resize(ctxt, dest, instance_id, migration_uuid,
                                               disk_info, image, new, False, self.timeout)
        except MoveGivenUp:
            return self._given_up(ctxt, instance_id, migration_uuid, (dest, source))
        except Exception as e:
            return self._roll_back(ctxt, instance_id, migration_uuid, old, "finish_resize", e,
                                   revert_source=True, power_on=was_running)
        with self.db.transaction() as s:  # from here on the VM is the destination's
            done = db_api.instance_update_if(
                s, instance_id, {"host": dest, "power_state": power},
                expected_task_state=states.RESIZE_FINISH)
        if not done:
            return self._given_up(ctxt, instance_id, migration_uuid, (dest, source))
        fault = None
        if was_running:
            try:
                power = self.compute.finish_resize(ctxt, dest, instance_id, migration_uuid,
                                                   disk_info, image, new, True, self.timeout)
            except Exception as e:  # the one copy stays there, as it is
                fault = "starting it on %s failed: %s" % (dest, exception.describe(e))
                LOG.warning("VM %s: %s", instance_id, fault)
        with self.db.transaction() as s:
            done = db_api.instance_update_if(
                s, instance_id, {"vm_state": states.RESIZED, "task_state": None,
                                 "power_state": power, "fault": fault},
                expected_task_state=states.RESIZE_FINISH)
            if done:
                vm_migrations.update_if(s, migration_uuid, {"status": "finished"},
                                        expected_status="post-migrating")
        if not done:
            return self._given_up(ctxt, instance_id, migration_uuid, (dest, source))
        LOG.info("VM %s resized from %s to %s: VERIFY_RESIZE", instance_id, source, dest)
        self.timeline.record(ctxt, instance_id, "resized", details="%s -> %s, awaiting "
                             "confirm or revert" % (source, dest))
        self.timeline.finish(ctxt, instance_id, "success")
        return dest

    def _advance(self, instance_id, migration_uuid, status, new_status, task, new_task):
        with self.db.transaction() as s:
            if not (db_api.instance_update_if(s, instance_id, {"task_state": new_task},
                                              expected_task_state=task)
                    and vm_migrations.update_if(s, migration_uuid, {"status": new_status},
                                                expected_status=status)):
                raise MoveGivenUp()

    def _roll_back(self, ctxt, instance_id, migration_uuid, old, step, error,
                   revert_source=False, power_on=True):
        """The move failed at ``step``: the VM back on the source with its
        old flavor (``old``: sizes and flavor id), the destination's
        allocation freed, the migration "error"."""
        message = "%s failed: %s" % (step, exception.describe(error))
        LOG.warning("VM %s: move %s %s; rolling back", instance_id, migration_uuid, message)
        self.timeline.record(ctxt, instance_id, step, result="error", details=message)
        with self.db.transaction() as s:
            migration = vm_migrations.get(s, migration_uuid)
        values = {"vm_state": None, "task_state": None}
        if revert_source:
            try:
                power = self.compute.finish_revert_resize(
                    ctxt, migration.source_host, instance_id, migration_uuid, old, power_on,
                    self.timeout)
                values["power_state"] = power
            except Exception as e:
                fault = "%s; taking the VM back on %s failed: %s" % (
                    message, migration.source_host, exception.describe(e))
                values.update(vm_state=states.ERROR, power_state=states.NOSTATE, fault=fault)
        with self.db.transaction() as s:
            inst = db_api.instance_row(s, instance_id)
            if inst is not None:
                if values["vm_state"] is None:
                    values["vm_state"] = states.vm_state_for_power(
                        states.ACTIVE if power_on else states.STOPPED,
                        values.get("power_state", inst.power_state))
                _restore(s, inst, migration, old)
                db_api.instance_update_if(s, instance_id, dict(values, host=migration.source_host))
            vm_migrations.update_if(s, migration_uuid, {"status": "error"})
        self.timeline.finish(ctxt, instance_id, "error", values.get("fault", message))
        return None

    # -- recovery of a move whose conductor died (nova_conductor/move_recovery.py) --

    def recover_roll_back(self, ctxt, instance_id, migration_uuid, reason):
        """Before the source powered the VM off: end the move there."""
        with self.db.transaction() as s:
            old = _old_sizes(s, vm_migrations.get(s, migration_uuid))
        return self._roll_back(ctxt, instance_id, migration_uuid, old, "recovery",
                               exception.MigrationError(instance=instance_id, reason=reason))

    def recover_revert_back(self, ctxt, instance_id, migration_uuid, reason):
        """After the source powered the VM off (its disk set aside until a
        confirm): the destination drops its copy if it answers (else it is
        left shut off, which its reconcile finds an orphan), the source
        takes the VM back, running if it ran (vm_state is the VM's before
        the move until VERIFY_RESIZE)."""
        with self.db.transaction() as s:
            migration = vm_migrations.get(s, migration_uuid)
            inst = db_api.instance_row(s, instance_id)
            if inst is None:
                return None
            old = _old_sizes(s, migration)
        if migration.dest_host is not None:
            try:
                self.compute.revert_resize(ctxt, migration.dest_host, instance_id,
                                           migration_uuid, self.timeout)
            except Exception as e:
                LOG.warning("VM %s: destination %s did not drop its copy: %s", instance_id,
                            migration.dest_host, exception.describe(e))
        return self._roll_back(ctxt, instance_id, migration_uuid, old, "recovery",
                               exception.MigrationError(instance=instance_id, reason=reason),
                               revert_source=True, power_on=inst.vm_state == states.ACTIVE)

    def _given_up(self, ctxt, instance_id, migration_uuid, hosts):
        """The VM was deleted mid-move: its delete freed the allocations;
        the move's ends drop what they hold of it. A VM still there and not
        being deleted was taken over (a recovery that found this conductor silent too long):
        nothing of it is touched."""
        with self.db.transaction() as s:
            inst = db_api.instance_row(s, instance_id)
            if inst is not None and inst.task_state != states.DELETING:
                LOG.warning("VM %s: move %s taken over meanwhile; leaving it", instance_id,
                            migration_uuid)
                return None
        LOG.info("VM %s: move %s overtaken (deleted?); cleaning up %s", instance_id,
                 migration_uuid, ", ".join(hosts))
        with self.db.transaction() as s:
            vm_migrations.update_if(s, migration_uuid, {"status": "error"})
        for host in hosts:
            try:
                self.compute.terminate_instance(ctxt, host, instance_id)
            except exception.ServiceUnavailable as e:
                LOG.warning("VM %s: cleanup on %s not sent: %s", instance_id, host, e.message)
        self.timeline.finish(ctxt, instance_id, "error", "overtaken by a delete")
        return None

    # -- confirm / revert -------------------------------------------------------

    def confirm_resize(self, ctxt, instance_id, migration_uuid):
        """The API (or the auto-confirm) moved the VM to ``resize_confirming``
        and the migration to "confirming"."""
        with self.db.transaction() as s:
            migration = vm_migrations.get(s, migration_uuid)
        try:
            self.compute.confirm_resize(ctxt, migration.source_host, instance_id,
                                        migration_uuid, self.timeout)
        except Exception as e:
            return self._undo_request(ctxt, instance_id, migration_uuid,
                                      states.RESIZE_CONFIRMING, "confirm_resize", e)
        with self.db.transaction() as s:
            inst = db_api.instance_row(s, instance_id)
            allocations.release(s, migration_uuid)
            vm_migrations.update_if(s, migration_uuid, {"status": "confirmed"})
            if inst is not None:
                db_api.instance_update_if(
                    s, instance_id, {"vm_state": _resting(inst.power_state), "task_state": None},
                    expected_task_state=states.RESIZE_CONFIRMING)
        LOG.info("VM %s: resize confirmed; %s freed", instance_id, migration.source_host)
        self.timeline.finish(ctxt, instance_id, "success")
        return True

    def revert_resize(self, ctxt, instance_id, migration_uuid):
        """The API moved the VM to ``resize_reverting`` and the migration to
        "reverting": the destination destroys its copy, then the source
        defines the VM again with its old flavor."""
        with self.db.transaction() as s:
            migration = vm_migrations.get(s, migration_uuid)
            inst = db_api.instance_row(s, instance_id)
            if inst is None:
                return None
            old = _old_sizes(s, migration)
            power_on = inst.power_state == states.RUNNING
        try:
            self.compute.revert_resize(ctxt, migration.dest_host, instance_id, migration_uuid,
                                       self.timeout)
        except Exception as e:  # its copy may still be there: nothing else happens
            return self._undo_request(ctxt, instance_id, migration_uuid,
                                      states.RESIZE_REVERTING, "revert_resize", e)
        values = {"task_state": None, "host": migration.source_host, "fault": None}
        try:
            power = self.compute.finish_revert_resize(ctxt, migration.source_host, instance_id,
                                                      migration_uuid, old, power_on,
                                                      self.timeout)
            values.update(power_state=power, vm_state=_resting(power))
        except Exception as e:
            message = "finish_revert_resize failed: %s" % exception.describe(e)
            values.update(vm_state=states.ERROR, power_state=states.NOSTATE, fault=message)
        with self.db.transaction() as s:
            inst = db_api.instance_row(s, instance_id)
            if inst is not None:
                _restore(s, inst, migration, old)
                db_api.instance_update_if(s, instance_id, values,
                                          expected_task_state=states.RESIZE_REVERTING)
            vm_migrations.update_if(s, migration_uuid, {"status": "reverted" if "fault" not in
                                                        values or not values["fault"]
                                                        else "error"})
        LOG.info("VM %s: resize reverted to %s", instance_id, migration.source_host)
        if values.get("fault"):
            self.timeline.finish(ctxt, instance_id, "error", values["fault"])
        else:
            self.timeline.finish(ctxt, instance_id, "success")
        return True

    def confirm_expired(self, ctxt=None):
        """The auto-confirm (``[compute] resize_confirm_window`` seconds, 0:
        never): each move "finished" that long ago is confirmed as a user's
        confirm would be. How many were."""
        window = self.conf.compute.resize_confirm_window
        if window <= 0:
            return 0
        when = utcnow() - datetime.timedelta(seconds=window)
        with self.db.transaction() as s:
            expired = vm_migrations.finished_before(s, when)
        confirmed = 0
        for migration_uuid, instance_id in expired:
            try:
                with self.db.transaction() as s:
                    if not (db_api.instance_update_if(
                            s, instance_id, {"task_state": states.RESIZE_CONFIRMING},
                            expected_task_state=None, expected_vm_state=states.RESIZED)
                            and vm_migrations.update_if(s, migration_uuid,
                                                        {"status": "confirming"},
                                                        expected_status="finished")):
                        raise MoveGivenUp()  # rolls back: not this VM now
                    project_id = db_api.instance_row(s, instance_id).project_id
            except MoveGivenUp:
                continue
            LOG.info("VM %s: resize confirmed automatically after %d s", instance_id, window)
            vm_ctxt = context.RequestContext(project_id=project_id, is_admin=True,
                                             roles=["admin"])
            self.timeline.start_action(vm_ctxt, instance_id, "confirm_resize")
            confirmed += bool(self.confirm_resize(vm_ctxt, instance_id, migration_uuid))
        return confirmed

    def _undo_request(self, ctxt, instance_id, migration_uuid, task, step, error):
        """A confirm or revert that could not start: the VM awaits one again."""
        message = "%s failed: %s" % (step, exception.describe(error))
        LOG.warning("VM %s: %s", instance_id, message)
        with self.db.transaction() as s:
            db_api.instance_update_if(s, instance_id, {"task_state": None},
                                      expected_task_state=task)
            vm_migrations.update_if(s, migration_uuid, {"status": "finished"},
                                    expected_status=("confirming", "reverting"))
        self.timeline.record(ctxt, instance_id, step, result="error", details=message)
        self.timeline.finish(ctxt, instance_id, "error", message)
        return False


def _old_sizes(s, migration):
    """The VM's flavor before the move: the id the migration keeps, the
    sizes of the source allocation (held by the migration once the move
    started, by the VM before)."""
    held = (allocations.on_host(s, migration.uuid, migration.source_host)
            or allocations.on_host(s, migration.instance_id, migration.source_host))
    return {"flavor_id": migration.old_flavor_id, "vcpus": held.vcpus,
            "memory_mb": held.memory_mb, "root_gb": held.disk_gb}


def _restore(s, inst, migration, old):
    """Allocations, flavor and quota as before the move: the VM's claim of
    the destination freed, the source's allocation the VM's again (a move
    that never got a destination never moved it)."""
    if allocations.holds_any(s, migration.uuid):
        allocations.release(s, inst.id)
        allocations.move_allocations(s, migration.uuid, inst.id)
    auth.quota_release(s, inst.project_id, inst.vcpus - old["vcpus"],
                       inst.memory_mb - old["memory_mb"], instances=0)
    db_api.instance_update_if(s, inst.id, {
        "flavor_id": old["flavor_id"] or inst.flavor_id, "vcpus": old["vcpus"],
        "memory_mb": old["memory_mb"], "root_gb": old["root_gb"]})


def _resting(power_state):
    return states.STOPPED if power_state in (states.SHUTDOWN, states.CRASHED) else states.ACTIVE
