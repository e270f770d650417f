"""Power actions of the compute manager (a mixin of ComputeManager).

The API has already moved the VM to the task (e.g. powering-off) with a guard;
compute checks the task is still the one it was asked for (a delete may have
overtaken it), acts, and reports the end state; on failure it reports what
the hypervisor shows instead."""
import logging
import threading

from common import exception, states

LOG = logging.getLogger(__name__)


class PowerActionsMixin:
    def stop_instance(self, ctxt, instance_id):
        self._run_task(ctxt, instance_id, states.POWERING_OFF, lambda cancel: self.driver.power_off(
            instance_id, self.conf.compute.shutdown_timeout, cancel))

    def start_instance(self, ctxt, instance_id):
        self._run_task(ctxt, instance_id, states.POWERING_ON,
                       lambda cancel: self.driver.power_on(instance_id))

    def reboot_instance(self, ctxt, instance_id, hard=False):
        task = states.REBOOTING_HARD if hard else states.REBOOTING
        self._run_task(ctxt, instance_id, task, lambda cancel: self.driver.reboot(
            instance_id, hard=hard, timeout=self.conf.compute.shutdown_timeout, cancel=cancel))

    def pause_instance(self, ctxt, instance_id):
        self._run_task(ctxt, instance_id, states.PAUSING,
                       lambda cancel: self.driver.pause(instance_id))

    def unpause_instance(self, ctxt, instance_id):
        self._run_task(ctxt, instance_id, states.UNPAUSING,
                       lambda cancel: self.driver.unpause(instance_id))

    def suspend_instance(self, ctxt, instance_id):
        self._run_task(ctxt, instance_id, states.SUSPENDING,
                       lambda cancel: self.driver.suspend(instance_id))

    def resume_instance(self, ctxt, instance_id):
        self._run_task(ctxt, instance_id, states.RESUMING,
                       lambda cancel: self.driver.resume(instance_id))

    # -- helpers ------------------------------------------------------------

    def _cancel_event(self, instance_id):
        """Set by a delete, so a long clean shutdown stops waiting at once."""
        with self._cancels_lock:
            return self._cancels.setdefault(instance_id, threading.Event())

    def _run_task(self, ctxt, instance_id, task_state, operation):
        cancel = self._cancel_event(instance_id)
        with self.locks.lock(instance_id):
            current = self._report(self.conductor.instance_get, ctxt, instance_id)
            if (current is None or current["host"] != self.host
                    or current["task_state"] != task_state):
                LOG.info("VM %s: %s skipped (now %s)", instance_id, task_state,
                         "gone" if current is None else current["task_state"])
                if current is None or current["task_state"] == states.DELETING:
                    self.timeline.finish(ctxt, instance_id, "error", "overtaken by a delete")
                return
            try:
                with self.timeline.step(ctxt, instance_id, task_state):
                    operation(cancel)
            except Exception as e:
                message = e.message if isinstance(e, exception.MininovaException) else str(e)
                LOG.warning("VM %s: %s failed: %s", instance_id, task_state, message)
                self._report(self.conductor.instance_task_failed, ctxt, instance_id, self.host,
                             task_state, self._power_state(instance_id), message)
                self.timeline.finish(ctxt, instance_id, "error", message)
                return
            power_state = self._power_state(instance_id)
            LOG.info("VM %s: %s done, power %s", instance_id, task_state, power_state)
            self._report(self.conductor.instance_task_done, ctxt, instance_id, self.host,
                         task_state, power_state)
            self.timeline.finish(ctxt, instance_id, "success")

    def _power_state(self, instance_id):
        try:
            return self.driver.get_info(instance_id)["power_state"]
        except exception.InstanceNotFound:
            return states.NOSTATE
