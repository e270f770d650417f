"""Level-based reconciliation of this host's VM rows with its hypervisor.

observe (the domains this host owns, then the rows that say they live here),
``plan(desired, actual)`` (pure), apply (each step re-checked under the VM's
lock, errors contained per VM). Runs at start-up, after settling interrupted
tasks, and periodically to catch any event that was missed."""
import dataclasses
import logging
import os
import time

from common import exception, states

LOG = logging.getLogger(__name__)

RESTING = (states.ACTIVE, states.STOPPED, states.PAUSED, states.SUSPENDED)


@dataclasses.dataclass(frozen=True)
class Step:
    kind: str          # sync_power | vanished | orphan
    instance_id: str
    power_state: str | None = None


def plan(desired, actual):
    """``desired``: {id: row dict} of live rows on this host; ``actual``:
    {id: power_state} of the domains this host owns. Returns the steps."""
    steps = []
    for instance_id, row in sorted(desired.items()):
        if row["task_state"] is not None:
            continue  # a task in progress reports its own outcome
        power = actual.get(instance_id)
        if power is None:
            if row["vm_state"] in RESTING:
                steps.append(Step("vanished", instance_id))
        elif power != row["power_state"] or (
                states.vm_state_for_power(row["vm_state"], power) != row["vm_state"]):
            steps.append(Step("sync_power", instance_id, power))
    for instance_id in sorted(set(actual) - set(desired)):
        steps.append(Step("orphan", instance_id, actual[instance_id]))
    return steps


class SyncMixin:
    """Reconciliation and start-up settling, for ComputeManager."""

    def reconcile(self, ctxt):
        # Domains first, rows second: a domain seen here was defined after its
        # row was written, so a build in flight is never taken for an orphan.
        actual = {i["id"]: i["power_state"] for i in self.driver.list_instances()}
        desired = {r["id"]: r for r in
                   self._report(self.conductor.instance_list_for_host, ctxt, self.host)}
        steps = plan(desired, actual)
        for step in steps:
            try:
                self._apply(ctxt, step)
            except Exception:
                LOG.exception("VM %s: reconcile step %s failed", step.instance_id, step.kind)
        return steps

    def sync_power_state(self, ctxt, instance_id):
        """Read one domain's state and report it (after a lifecycle event).

        While the VM is being built here, the sync waits for the build's end:
        the build reports the state it reads itself, so the events of its
        own start (started, resumed) cost no message at all."""
        if self._defer_sync_while_building(instance_id):
            return
        try:
            power = self.driver.get_info(instance_id)["power_state"]
        except (exception.InstanceNotFound, exception.Invalid):
            return  # not ours, or gone: the reconcile loop sees to vanished VMs
        self._report(self.conductor.instance_power_sync, ctxt, instance_id, self.host, power)

    # -- event syncs during a build ---------------------------------------

    def _build_started(self, instance_id):
        with self._building_lock:
            self._building[instance_id] = None

    def _build_read_state(self, instance_id):
        """The build's own read of the domain's state, for its report: any
        event sync due before this read is covered by it."""
        read_at = time.monotonic()
        power_state = self.driver.get_info(instance_id)["power_state"]
        with self._building_lock:
            self._building[instance_id] = read_at
        return power_state

    def _defer_sync_while_building(self, instance_id):
        with self._building_lock:
            if instance_id not in self._building:
                return False
            self._deferred_syncs[instance_id] = time.monotonic()
            return True

    def _build_ended(self, ctxt, instance_id):
        """After the build's report: the syncs that came after its own read
        of the state (or all of them, if it never read) are done now."""
        with self._building_lock:
            read_at = self._building.pop(instance_id, None)
            deferred_at = self._deferred_syncs.pop(instance_id, None)
        if deferred_at is not None and (read_at is None or deferred_at >= read_at):
            try:
                self.sync_power_state(ctxt, instance_id)
            except Exception:
                LOG.exception("VM %s: power sync after its build failed", instance_id)

    def _apply(self, ctxt, step):
        with self.locks.lock(step.instance_id):
            row = self._report(self.conductor.instance_get, ctxt, step.instance_id)
            mine = row is not None and row["host"] == self.host
            if step.kind == "sync_power" and mine:
                self.sync_power_state(ctxt, step.instance_id)
            elif step.kind == "vanished" and mine and row["task_state"] is None:
                try:
                    self.driver.get_info(step.instance_id)
                    return  # it is back (or was being rebuilt): nothing vanished
                except exception.InstanceNotFound:
                    pass
                self._report(self.conductor.instance_vanished, ctxt, step.instance_id,
                             self.host)
            elif step.kind == "orphan" and not mine:
                if self.conf.compute.reap_orphans:
                    LOG.warning("VM %s: orphan domain (no live VM row); destroying it",
                                step.instance_id)
                    self.driver.destroy(step.instance_id)
                else:
                    LOG.warning("VM %s: orphan domain (no live VM row) left in place; set "
                                "[compute] reap_orphans to destroy such domains",
                                step.instance_id)

    def _build_started_here(self, instance_id):
        try:
            self.driver.get_info(instance_id)
            return True
        except exception.InstanceNotFound:
            pass
        return os.path.isdir(os.path.join(os.path.abspath(self.conf.compute.instances_path),
                                          instance_id))

    def settle_interrupted(self, ctxt):
        """At start-up (Nova's init_host): finish or undo what a previous run
        of this compute left half done."""
        rows = self._report(self.conductor.instance_list_for_host, ctxt, self.host)
        for row in rows:
            task, instance_id = row["task_state"], row["id"]
            try:
                if task == states.DELETING:
                    LOG.info("VM %s: finishing an interrupted delete", instance_id)
                    self.terminate_instance(ctxt, instance_id)
                elif task == states.SPAWNING:
                    with self.locks.lock(instance_id):
                        if not self._build_started_here(instance_id):
                            # Its request is still queued (acked only after the
                            # handler): it will build it; the watchdog covers a
                            # lost one.
                            LOG.info("VM %s: its build had not started; its queued request "
                                     "will build it", instance_id)
                            continue
                        # A build that started may be what crashed us: not retried
                        # here but by the scheduler, which counts the attempts.
                        self._destroy_quietly(instance_id)
                        self._report(self.conductor.instance_build_interrupted, ctxt,
                                     instance_id, self.host, "The build was interrupted by a "
                                     "restart of the compute service on %s." % self.host)
                elif task == states.POWERING_OFF:
                    self.stop_instance(ctxt, instance_id)
                elif task == states.POWERING_ON:
                    self.start_instance(ctxt, instance_id)
                elif task is not None:
                    self._report(self.conductor.instance_task_failed, ctxt, instance_id,
                                 self.host, task, self._power_state(instance_id),
                                 "%s was interrupted by a restart of the compute service on "
                                 "%s." % (task, self.host))
            except Exception:
                LOG.exception("VM %s: settling interrupted task %s failed", instance_id, task)
