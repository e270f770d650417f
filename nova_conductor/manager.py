"""Conductor endpoint: compute hosts report state here and it writes the DB.

Every report is a conditional update, so a late or repeated report (RPC is
at-least-once) cannot undo a newer state: e.g. "spawned" after the user asked
for a delete leaves the VM DELETING.

Which host may report what (as nova_compute/ownership.py decides on the
host's side): the VM's host, or either end of its move in progress, for task
results, addresses and the end of a delete; only the VM's host, and only
outside a move involving it, for power-state syncs and a vanished domain (a
domain arriving or leaving is the move's business)."""
import json
import logging

import sqlalchemy as sa

from common import exception, metrics, payloads, states
from common.db import actions, allocations, fixed_ips, instance_metadata
from common.db import api as db_api
from common.db import images as db_images
from common.db.models import Instance, utcnow
from common.fixed_networks import FixedNetwork
from common.rpc import policy
from common.timeline import DbSink, Timeline
from nova_conductor.tasks.evacuate import EvacuateTask

LOG = logging.getLogger(__name__)



class ConductorManager:
    # What other daemons may call over the conductor topic (see rpcapi.py).
    RPC_METHODS = frozenset({
        "service_heartbeat", "instance_get", "instance_list_for_host",
        "instance_set_address", "instance_task_done", "instance_task_failed",
        "instance_power_sync", "instance_vanished", "instance_spawned",
        "instance_failed_builds_for_host", "instance_build_failed",
        "instance_build_interrupted", "instance_terminated", "action_event", "action_finish",
        "fixed_ip_allocate", "build_instances", "evacuate_instance", "evacuation_done",
        "evacuation_failed", "evacuations_to_clean", "evacuation_source_cleaned",
        "migrate_server", "confirm_resize", "revert_resize", "live_migrate_instance",
        "live_migration_progress", "live_migration_succeeded", "live_migration_failed"})
    # Who may call each (common.rpc.policy): the API's requests; the
    # computes' reports, each about its own host.
    _REPORT = policy.allow("compute", "conductor")
    _REQUEST = policy.allow("api", "conductor", "scheduler", "manage", user_request=True)
    RPC_POLICY = {
        **dict.fromkeys(("build_instances", "evacuate_instance", "migrate_server",
                         "confirm_resize", "revert_resize", "live_migrate_instance"), _REQUEST),
        **dict.fromkeys(("service_heartbeat", "action_event", "action_finish"),
                        policy.allow("compute", "conductor", "scheduler", "api")),
        **dict.fromkeys(("instance_get", "instance_list_for_host", "instance_set_address",
                         "instance_task_done", "instance_task_failed", "instance_power_sync",
                         "instance_vanished", "instance_spawned",
                         "instance_failed_builds_for_host", "instance_build_failed",
                         "instance_build_interrupted", "instance_terminated",
                         "fixed_ip_allocate", "evacuation_done", "evacuation_failed",
                         "evacuations_to_clean", "evacuation_source_cleaned",
                         "live_migration_progress", "live_migration_succeeded",
                         "live_migration_failed"), _REPORT),
    }

    def __init__(self, db, build_task=None, max_attempts=1, host="conductor",
                 evacuate_task=None, migrate_task=None, live_migration_task=None):
        """``build_task``: a ``tasks.build.BuildTask``, which runs the builds
        the API casts here; ``max_attempts`` > 1 (with a ``build_task``) hands
        a VM whose build failed back to it for another host;
        ``evacuate_task``: a ``tasks.evacuate.EvacuateTask`` (default: one
        that only takes the compute hosts' reports); ``migrate_task``: a
        ``tasks.migrate.MigrateTask`` (resize, cold migration, their confirm
        and revert); ``live_migration_task``: a
        ``tasks.live_migrate.LiveMigrationTask``."""
        self.db = db
        self.build_task = build_task
        self.migrate_task = migrate_task
        self.live_migration_task = live_migration_task
        self.max_attempts = max_attempts if build_task is not None else 1
        self.timeline = Timeline(DbSink(db), host)
        self.evacuations = evacuate_task or EvacuateTask(db, None, None, self.timeline, host)

    def build_instances(self, ctxt, instance_id, action_id=None):
        """(message 1.4) Place a VM stored in 'scheduling' and cast its build.
        A malformed request is dead-lettered here, where it arrived."""
        if not isinstance(instance_id, str):
            raise TypeError("instance_id must be a string, not %s" % type(instance_id).__name__)
        self.build_task.build_instances(ctxt, instance_id, action_id=action_id)

    # -- evacuation (message 1.5; nova_conductor/tasks/evacuate.py) ---------

    def evacuate_instance(self, ctxt, instance_id, migration_uuid, host=None):
        """From the API: place the VM of a down host elsewhere and rebuild it
        there (``host``: the admin's choice of destination)."""
        if not isinstance(instance_id, str):
            raise TypeError("instance_id must be a string, not %s" % type(instance_id).__name__)
        self.evacuations.evacuate(ctxt, instance_id, migration_uuid, host)

    def evacuation_done(self, ctxt, instance_id, host, migration_uuid, power_state):
        return self.evacuations.done(ctxt, instance_id, host, migration_uuid, power_state)

    def evacuation_failed(self, ctxt, instance_id, host, migration_uuid, reason):
        return self.evacuations.failed(ctxt, instance_id, host, migration_uuid, reason)

    def evacuations_to_clean(self, ctxt, host):
        return self.evacuations.to_clean(ctxt, host)

    def evacuation_source_cleaned(self, ctxt, migration_uuid, host):
        return self.evacuations.source_cleaned(ctxt, migration_uuid, host)
    # Resize and cold migration (message 1.6): casts of the API.
    def migrate_server(self, ctxt, instance_id, migration_uuid, target_host=None):
        self.migrate_task.migrate_server(ctxt, instance_id, migration_uuid, target_host)

    def confirm_resize(self, ctxt, instance_id, migration_uuid):
        self.migrate_task.confirm_resize(ctxt, instance_id, migration_uuid)

    def revert_resize(self, ctxt, instance_id, migration_uuid):
        self.migrate_task.revert_resize(ctxt, instance_id, migration_uuid)

    # -- live migration (message 1.7; nova_conductor/tasks/live_migrate.py) --------

    def live_migrate_instance(self, ctxt, instance_id, migration_uuid, host=None):
        """From the API: place, prepare and start the VM's live migration."""
        self.live_migration_task.execute(ctxt, instance_id, migration_uuid, host=host)

    def live_migration_progress(self, ctxt, instance_id, migration_uuid, progress):
        return self.live_migration_task.progress(ctxt, instance_id, migration_uuid, progress)

    def live_migration_succeeded(self, ctxt, instance_id, migration_uuid, host):
        return self.live_migration_task.succeeded(ctxt, instance_id, migration_uuid, host)

    def live_migration_failed(self, ctxt, instance_id, migration_uuid, host, reason,
                              aborted=False):
        return self.live_migration_task.failed(ctxt, instance_id, migration_uuid, host,
                                               reason, aborted)

    def service_heartbeat(self, ctxt, host, binary, resources=None):
        with self.db.transaction() as s:
            db_api.service_heartbeat(s, host, binary, resources)

    def instance_get(self, ctxt, instance_id):
        """The live VM with its move in progress (``"migration"``, see
        nova_compute/ownership.py) and ``payloads.GUEST_FIELDS``, or None."""
        with self.db.transaction() as s:
            row = db_api.instance_with_move(s, instance_id)
            if row is None:
                return None
            return dict(_with_move(row), **instance_metadata.guest_data(s, instance_id))

    def instance_list_for_host(self, ctxt, host):
        """The live VMs on ``host`` and those with a move in progress from or
        to it (each with its ``"migration"``)."""
        with self.db.transaction() as s:
            return [_with_move(row) for row in db_api.instances_of_host(s, host)]

    def instance_set_address(self, ctxt, instance_id, host, ip_address):
        with self.db.transaction() as s:
            return db_api.instance_update_if(s, instance_id, {"ip_address": ip_address},
                                             involved_host=host)

    def fixed_ip_allocate(self, ctxt, instance_id, host, network):
        """(message 1.3) The VM's fixed IP in ``network`` (a FixedNetwork as a
        dict, which ``host`` read from its hypervisor), allocated if it holds
        none, and written to the VM's row: known before the VM is ACTIVE.
        None when the VM is no longer spawning on ``host`` (deleted, given
        up, moved on): then nothing is allocated. Idempotent."""
        net = FixedNetwork.from_dict(network)
        with self.db.transaction() as s:
            # The row lock orders this against a concurrent delete: either the
            # delete comes first (the VM is gone here) or its release, after
            # this commits, finds the address.
            inst = s.execute(sa.select(Instance.host, Instance.task_state).where(
                Instance.id == instance_id, Instance.deleted_at.is_(None))
                .with_for_update()).first()
            if inst is None or inst.host != host or inst.task_state != states.SPAWNING:
                return None
            address = fixed_ips.allocate(s, net, instance_id, host)
            db_api.instance_update_if(s, instance_id, {"ip_address": address},
                                      expected_host=host)
        LOG.info("VM %s: fixed IP %s in %s", instance_id, address, net.name)
        return address

    def instance_task_done(self, ctxt, instance_id, host, task_state, power_state):
        """A power action finished: the VM rests in the task's end state."""
        with self.db.transaction() as s:
            return db_api.instance_update_if(
                s, instance_id, {"vm_state": states.task_result(task_state, power_state),
                                 "task_state": None,
                                 "power_state": power_state, "fault": None},
                expected_task_state=task_state, involved_host=host)

    def instance_task_failed(self, ctxt, instance_id, host, task_state, power_state, message):
        """A power action failed: the VM keeps the state the hypervisor shows.
        A failed snapshot or backup leaves no image waiting for its data (the
        host discards its own; this covers one whose host restarted and no
        longer knows it), in the same transaction: a next snapshot of the VM
        cannot start before."""
        LOG.warning("VM %s: %s failed on %s: %s", instance_id, task_state, host, message)
        with self.db.transaction() as s:
            inst = db_api.instance_get(s, instance_id)
            done = db_api.instance_update_if(
                s, instance_id,
                {"task_state": None, "power_state": power_state, "fault": message,
                 "vm_state": states.task_failure_state(task_state, inst.vm_state,
                                                       power_state)},
                expected_task_state=task_state, involved_host=host)
            if done and task_state in (states.IMAGE_SNAPSHOT, states.IMAGE_BACKUP):
                dropped = db_images.delete_unfilled_snapshots(s, instance_id)
                if dropped:
                    LOG.info("VM %s: image(s) %s of its failed %s deleted", instance_id,
                             ", ".join(dropped), task_state)
            return done

    def instance_power_sync(self, ctxt, instance_id, host, power_state):
        """The hypervisor shows ``power_state`` for a resting VM (an event or
        the reconcile loop saw it): adopt it. A VM with a task in progress is
        left to that task, which reports its own end state."""
        with self.db.transaction() as s:
            inst = db_api.instance_row(s, instance_id)
            if inst is None or inst.host != host or inst.task_state is not None:
                return False
            vm_state = states.vm_state_for_power(inst.vm_state, power_state)
            if (vm_state, power_state) == (inst.vm_state, inst.power_state):
                return False
            done = db_api.instance_update_if(
                s, instance_id, {"vm_state": vm_state, "power_state": power_state},
                expected_task_state=None, expected_host=host, expected_vm_state=inst.vm_state,
                not_in_transit_on=host)
        if done:
            LOG.info("VM %s is %s on %s: vm_state %s -> %s", instance_id, power_state, host,
                     inst.vm_state, vm_state)
        return done

    def instance_vanished(self, ctxt, instance_id, host):
        """The VM's domain is gone from its host without mininova deleting it."""
        with self.db.transaction() as s:
            done = db_api.instance_update_if(
                s, instance_id,
                {"vm_state": states.ERROR, "power_state": states.NOSTATE,
                 "fault": "The VM's domain vanished from host %s outside mininova." % host},
                expected_task_state=None, expected_host=host, not_in_transit_on=host)
        if done:
            LOG.warning("VM %s: domain vanished from %s; VM in ERROR", instance_id, host)
        return done

    def instance_spawned(self, ctxt, instance_id, host, power_state, events=(), action_id=None):
        """``action_id`` (message 1.1): the create's action, which the
        build task passed along with the build: no lookup then (a 1.0
        message has none: the action of its request)."""
        with self.db.transaction() as s:
            now = utcnow()
            done = db_api.instance_spawned(s, instance_id, host, states.SPAWNING,
                                           states.ACTIVE, power_state, now)
            if done:  # the build's steps, its report and its outcome: one commit
                steps = list(events) + [{
                    "event": "reported", "host": host, "start_time": now,
                    "finish_time": now, "result": "success",
                    "details": "power %s" % power_state}]
                if action_id is None:  # a 1.0 report: the action of its request
                    action_id = actions.action_id_or_unknown(s, instance_id, ctxt.request_id)
                actions.events_add(s, action_id, steps)
                actions.action_finish_by_id(s, action_id, instance_id, "success", None, now)
        LOG.info("VM %s ACTIVE on %s%s", instance_id, host, "" if done else " (ignored: state moved on)")
        if done:
            metrics.build_finished("success", events)
        return done

    def instance_build_failed(self, ctxt, instance_id, host, reason, events=(), action_id=None):
        """Compute cleaned up after a failed spawn. Free its allocations; then build
        again on another host (the build task, in this process), or after ``max_attempts`` hosts give up with a fault
        listing each host tried and its error."""
        return self._build_failed(ctxt, instance_id, {"host": host, "error": reason},
                                  events, action_id)

    def instance_build_interrupted(self, ctxt, instance_id, host, reason):
        """(message 1.2) The build was cut short by a restart of its host's
        compute service, which cleaned up after it at start-up. As a failed
        build, except that the host may be chosen again: it did not fail the
        build (and on a one-host cloud it is the only one). The attempt still
        counts, so a build that crashes its host is not retried for ever."""
        return self._build_failed(ctxt, instance_id,
                                  {"host": host, "error": reason, "interrupted": True})

    def _build_failed(self, ctxt, instance_id, attempt, events=(), action_id=None):
        host, reason = attempt["host"], attempt["error"]
        with self.db.transaction() as s:
            try:
                inst = db_api.instance_get(s, instance_id)
            except exception.InstanceNotFound:
                return False
            tried = db_api.instance_attempts(inst) + [attempt]
            retry = len(tried) < self.max_attempts
            if retry:
                values = {"host": None, "task_state": states.SCHEDULING,
                          "sched_attempts": json.dumps(tried)}
            else:
                fault = reason if len(tried) == 1 else "Build failed on %d hosts: %s" % (
                    len(tried), "; ".join("%s: %s" % (t["host"], t["error"]) for t in tried))
                values = {"vm_state": states.ERROR, "task_state": None,
                          "power_state": states.NOSTATE, "fault": fault,
                          "sched_attempts": json.dumps(tried)}
            done = db_api.instance_update_if(s, instance_id, values,
                                             expected_task_state=states.SPAWNING,
                                             expected_host=host)
            if done:
                allocations.release(s, instance_id)
                if fixed_ips.release_instance(s, instance_id):  # the next host allocates anew
                    db_api.instance_update_if(s, instance_id, {"ip_address": None})
                if events:
                    if action_id is None:  # a 1.0 report: the action of its request
                        action_id = actions.action_id_or_unknown(s, instance_id,
                                                                 ctxt.request_id)
                    actions.events_add(s, action_id, events)
                if not retry:  # the create ends here, whoever reported it
                    actions.finish_open_action(s, instance_id, "build failed", host,
                                               actions.ERROR, values["fault"])
        if not done:
            return False
        LOG.warning("VM %s build failed on %s (attempt %d of %d): %s", instance_id, host,
                    len(tried), self.max_attempts, reason)
        metrics.build_finished("rescheduled" if retry else "error", events)
        if retry:
            self.timeline.record(ctxt, instance_id, "rescheduled", result="error",
                                 details="%s failed: %s" % (host, reason))
            try:
                self.build_task.build_instances(ctxt, instance_id, action_id=action_id)
            except exception.ServiceUnavailable as e:
                # The failure is recorded; the VM waits in 'scheduling' for
                # the watchdog's resend.
                LOG.warning("VM %s: no new host now: %s", instance_id, e.message)
        return True

    def instance_failed_builds_for_host(self, ctxt, host):
        """Ids of ``host``'s live VMs in ERROR that never ran (no launch time,
        no task): builds given up, e.g. by the watchdog while the host was
        away or silent. Nothing of them may stay on the host."""
        with self.db.transaction() as s:
            return list(s.scalars(sa.select(Instance.id).where(
                Instance.host == host, Instance.deleted_at.is_(None),
                Instance.vm_state == states.ERROR, Instance.task_state.is_(None),
                Instance.launched_at.is_(None))).all())

    def instance_terminated(self, ctxt, instance_id, host):
        with self.db.transaction() as s:
            done = db_api.instance_soft_delete(s, instance_id, involved_host=host)
        LOG.info("VM %s deleted from %s", instance_id, host)
        return done

    # -- action timeline (casts from compute; see common.timeline) -----------

    def action_event(self, ctxt, instance_id, event, host, start_time, finish_time, result,
                     details=None):
        """Store one step of the action ``ctxt.request_id`` on a VM (times are
        ISO 8601 strings). Idempotent: a redelivered event is stored once."""
        with self.db.transaction() as s:
            actions.event_record(s, instance_id, ctxt.request_id, event, host=host,
                                 start_time=actions.parse_time(start_time),
                                 finish_time=actions.parse_time(finish_time),
                                 result=result, details=details,
                                 project_id=ctxt.project_id, user_id=ctxt.user_id)

    def action_finish(self, ctxt, instance_id, result, message=None):
        """Record the outcome ("success"/"error") of the action ``ctxt.request_id``."""
        with self.db.transaction() as s:
            actions.action_finish(s, instance_id, ctxt.request_id, result, message,
                                  project_id=ctxt.project_id, user_id=ctxt.user_id)
        LOG.info("VM %s: action %s finished: %s%s", instance_id, ctxt.request_id, result,
                 ": %s" % message if message else "")


def _with_move(row):
    instance = payloads.instance(row)
    instance["migration"] = db_api.move_of(row)
    return instance
