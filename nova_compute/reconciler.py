"""Level-based reconciliation of this host's VM rows with its hypervisor.

observe (the domains this host owns, then the rows that concern it),
``plan(desired, actual, host)`` (pure), apply (each step re-checked under the
VM's lock against a fresh row, errors contained per VM). Runs at start-up,
after settling interrupted tasks, and periodically to catch any event that
was missed. ``sync_after_event`` is the same for one VM, after an event."""
import dataclasses
import logging

from common import exception, states
from nova_compute import events, ownership

LOG = logging.getLogger(__name__)

SYNC_POWER = "sync_power"   # the hypervisor shows another power state: report it
VANISHED = "vanished"       # a resting VM of ours has no domain: report it
ORPHAN = "orphan"           # a domain of ours no row accounts for
EVACUATED = "evacuated"     # a stale copy of a VM rebuilt elsewhere: destroy it


@dataclasses.dataclass(frozen=True)
class Step:
    kind: str          # SYNC_POWER | VANISHED | ORPHAN | EVACUATED
    instance_id: str
    power_state: str | None = None


def plan(desired, actual, host):
    """``desired``: {id: row dict} of the live rows that concern ``host``
    (on it, or moving from or to it); ``actual``: {id: power_state} of the
    domains ``host`` owns. Returns the steps, in id order per kind."""
    steps = []
    for instance_id, row in sorted(desired.items()):
        relation = ownership.relation(row, host)
        power = actual.get(instance_id)
        if relation == ownership.IN_TRANSIT:
            # The move's own steps report; only a copy left behind by an
            # evacuation is known to be stale.
            if power is not None and ownership.evacuated_from(row, host):
                steps.append(Step(EVACUATED, instance_id, power))
            continue
        if relation != ownership.OWNER or row["task_state"] is not None:
            continue  # not ours (see orphans below), or a task reports its own outcome
        if power is None:
            if row["vm_state"] in states.RESTING:
                steps.append(Step(VANISHED, instance_id))
        elif power != row["power_state"] or (
                states.vm_state_for_power(row["vm_state"], power) != row["vm_state"]):
            steps.append(Step(SYNC_POWER, instance_id, power))
    for instance_id in sorted(actual):
        if ownership.relation(desired.get(instance_id), host) == ownership.NONE:
            steps.append(Step(ORPHAN, instance_id, actual[instance_id]))
    return steps


class Reconciler:
    def __init__(self, driver, conductor, locks, builds, conf):
        """``conductor``: a RetryingConductor; ``builds``: the BuildTracker
        (syncs wait for a build's end); ``conf``: [compute] reap_orphans is
        read per step."""
        self.driver = driver
        self.conductor = conductor
        self.locks = locks
        self.builds = builds
        self.conf = conf
        self.host = conf.host

    def reconcile(self, ctxt):
        # Domains first, rows second: a domain seen here was defined after its
        # row (and any move's record) was written, so a build or an arriving
        # move in flight is never taken for an orphan.
        actual = {i["id"]: i["power_state"] for i in self.driver.list_instances()}
        desired = {r["id"]: r for r in self.conductor.instance_list_for_host(ctxt, self.host)}
        steps = plan(desired, actual, self.host)
        for step in steps:
            try:
                self.apply(ctxt, step)
            except Exception:
                LOG.exception("VM %s: reconcile step %s failed", step.instance_id, step.kind)
        return steps

    def sync_power_state(self, ctxt, instance_id):
        """Read one domain's state and report it (after a lifecycle event).

        While the VM is being built here, the sync waits for the build's end
        (the Builder asks for it then, if still due)."""
        if self.builds.defer_sync(instance_id):
            return
        try:
            power = self.driver.get_info(instance_id)["power_state"]
        except (exception.InstanceNotFound, exception.Invalid):
            return  # not ours, or gone: the reconcile loop sees to vanished VMs
        # The conductor adopts it only for a resting VM on this host.
        self.conductor.instance_power_sync(ctxt, instance_id, self.host, power)

    def sync_after_event(self, ctxt, instance_id, expected=None):
        """After a lifecycle event (PowerEventSync): read and report under
        the VM's lock if it is free; an answer of nova_compute.events.

        A task holding the lock reports its own end state: BUSY, asked
        again shortly. A read not in ``expected`` (the states a stop-like
        event announced) is a domain still changing: CHANGING, read again
        after the debounce with ``expected`` None."""
        with self.locks.try_lock(instance_id) as held:
            if not held:
                return events.BUSY
            if self.builds.defer_sync(instance_id):
                return events.DONE
            try:
                power = self.driver.get_info(instance_id)["power_state"]
            except (exception.InstanceNotFound, exception.Invalid):
                return events.DONE  # not ours, or gone: the reconcile loop sees to it
            if expected is not None and power not in expected:
                return events.CHANGING
            # A call, under the lock: applied before any task of this VM
            # here can start and report.
            self.conductor.instance_power_sync(ctxt, instance_id, self.host, power)
            return events.DONE

    def apply(self, ctxt, step):
        with self.locks.lock(step.instance_id):
            row = self.conductor.instance_get(ctxt, step.instance_id)
            relation = ownership.relation(row, self.host)
            if step.kind == SYNC_POWER and relation == ownership.OWNER:
                self.sync_power_state(ctxt, step.instance_id)
            elif (step.kind == VANISHED and relation == ownership.OWNER
                  and row["task_state"] is None):
                self._report_vanished(ctxt, step.instance_id)
            elif step.kind == ORPHAN and relation == ownership.NONE:
                self._orphan(step.instance_id)
            elif step.kind == EVACUATED and ownership.evacuated_from(row, self.host):
                LOG.warning("VM %s: evacuated from this host (now %s); destroying the copy "
                            "left here", step.instance_id, ownership.describe(row))
                self.driver.destroy(step.instance_id)
                self.driver.unplug_fixed_ip(step.instance_id)  # this network's entry
                # The allocation the evacuation holds here goes with the copy.
                self.conductor.evacuation_source_cleaned(ctxt, row["migration"]["uuid"],
                                                         self.host)

    def _report_vanished(self, ctxt, instance_id):
        try:
            self.driver.get_info(instance_id)
            return  # it is back (or was being rebuilt): nothing vanished
        except exception.InstanceNotFound:
            pass
        self.conductor.instance_vanished(ctxt, instance_id, self.host)

    def _orphan(self, instance_id):
        if self.conf.compute.reap_orphans:
            LOG.warning("VM %s: orphan domain (no live VM row); destroying it", instance_id)
            self.driver.destroy(instance_id)
            self.driver.unplug_fixed_ip(instance_id)
        else:
            LOG.warning("VM %s: orphan domain (no live VM row) left in place; set "
                        "[compute] reap_orphans to destroy such domains", instance_id)
