"""Power tasks of this host's VMs: stop, start, reboot, pause, unpause,
suspend, resume.

The API has already moved the VM to the task (e.g. powering-off) with a
guard; a task checks, under the VM's lock, that the VM is still this host's
and the task still the one asked for (a delete may have overtaken it), acts,
and reports the end state; on failure it reports what the hypervisor shows
instead."""
import logging

from common import exception, states
from nova_compute import ownership

LOG = logging.getLogger(__name__)


class PowerTasks:
    def __init__(self, driver, conductor, locks, timeline, cancels, conf):
        """``conductor``: a RetryingConductor; ``cancels``: the CancelRegistry
        a delete sets; ``conf``: [compute] shutdown_timeout is read per task."""
        self.driver = driver
        self.conductor = conductor
        self.locks = locks
        self.timeline = timeline
        self.cancels = cancels
        self.conf = conf
        self.host = conf.host

    def stop(self, ctxt, instance_id):
        self.run(ctxt, instance_id, states.POWERING_OFF, lambda cancel: self.driver.power_off(
            instance_id, self.conf.compute.shutdown_timeout, cancel))

    def start(self, ctxt, instance_id):
        self.run(ctxt, instance_id, states.POWERING_ON,
                 lambda cancel: self.driver.power_on(instance_id))

    def reboot(self, ctxt, instance_id, hard=False):
        task = states.REBOOTING_HARD if hard else states.REBOOTING
        self.run(ctxt, instance_id, task, lambda cancel: self.driver.reboot(
            instance_id, hard=hard, timeout=self.conf.compute.shutdown_timeout, cancel=cancel))

    def pause(self, ctxt, instance_id):
        self.run(ctxt, instance_id, states.PAUSING, lambda cancel: self.driver.pause(instance_id))

    def unpause(self, ctxt, instance_id):
        self.run(ctxt, instance_id, states.UNPAUSING,
                 lambda cancel: self.driver.unpause(instance_id))

    def suspend(self, ctxt, instance_id):
        self.run(ctxt, instance_id, states.SUSPENDING,
                 lambda cancel: self.driver.suspend(instance_id))

    def resume(self, ctxt, instance_id):
        self.run(ctxt, instance_id, states.RESUMING,
                 lambda cancel: self.driver.resume(instance_id))

    def run(self, ctxt, instance_id, task_state, operation):
        """``operation(cancel)`` for a VM in ``task_state`` on this host."""
        cancel = self.cancels.event(instance_id)
        with self.locks.lock(instance_id):
            current = self.conductor.instance_get(ctxt, instance_id)
            if (ownership.relation(current, self.host) != ownership.OWNER
                    or current["task_state"] != task_state):
                LOG.info("VM %s: %s skipped (now %s)", instance_id, task_state,
                         ownership.describe(current))
                if current is None or current["task_state"] == states.DELETING:
                    self.timeline.finish(ctxt, instance_id, "error", "overtaken by a delete")
                return
            try:
                with self.timeline.step(ctxt, instance_id, task_state):
                    operation(cancel)
            except Exception as e:
                message = exception.describe(e)
                LOG.warning("VM %s: %s failed: %s", instance_id, task_state, message)
                self.conductor.instance_task_failed(ctxt, instance_id, self.host, task_state,
                                                    self.power_state(instance_id), message)
                self.timeline.finish(ctxt, instance_id, "error", message)
                return
            power_state = self.power_state(instance_id)
            LOG.info("VM %s: %s done, power %s", instance_id, task_state, power_state)
            self.conductor.instance_task_done(ctxt, instance_id, self.host, task_state,
                                              power_state)
            self.timeline.finish(ctxt, instance_id, "success")

    def power_state(self, instance_id):
        """What the hypervisor shows now; NOSTATE for a domain that is gone."""
        try:
            return self.driver.get_info(instance_id)["power_state"]
        except exception.InstanceNotFound:
            return states.NOSTATE
