"""At start-up (Nova's init_host): finish or undo what a previous run of this
compute left half done, for the VMs this host owns. A VM in transit is left
to its move, which the conductor drives (and the reconciler covers a copy an
evacuation left here)."""
import logging
import os

from common import states
from nova_compute import ownership
from nova_compute.builder import destroy_quietly

LOG = logging.getLogger(__name__)


class StartupSettler:
    def __init__(self, driver, conductor, locks, deleter, power_tasks, conf):
        """``conductor``: a RetryingConductor; ``deleter`` finishes an
        interrupted delete, ``power_tasks`` an interrupted stop or start."""
        self.driver = driver
        self.conductor = conductor
        self.locks = locks
        self.deleter = deleter
        self.power_tasks = power_tasks
        self.conf = conf
        self.host = conf.host

    def settle(self, ctxt):
        for row in self.conductor.instance_list_for_host(ctxt, self.host):
            task, instance_id = row["task_state"], row["id"]
            if task is None:
                continue
            # A delete is sent to the row's host and wins over a move in
            # progress; every other task of a VM in transit is the move's.
            if not (task == states.DELETING and row["host"] == self.host
                    or ownership.relation(row, self.host) == ownership.OWNER):
                continue
            try:
                self._settle(ctxt, instance_id, task)
            except Exception:
                LOG.exception("VM %s: settling interrupted task %s failed", instance_id, task)

    def _settle(self, ctxt, instance_id, task):
        if task == states.DELETING:
            LOG.info("VM %s: finishing an interrupted delete", instance_id)
            self.deleter.terminate(ctxt, instance_id)
        elif task == states.SPAWNING:
            with self.locks.lock(instance_id):
                if not self._build_started_here(instance_id):
                    # Its request is still queued (acked only after the
                    # handler): it will build it; the watchdog covers a lost one.
                    LOG.info("VM %s: its build had not started; its queued request "
                             "will build it", instance_id)
                    return
                # A build that started may be what crashed us: not retried
                # here but by the scheduler, which counts the attempts.
                destroy_quietly(self.driver, instance_id)
                self.deleter.fixed_ips.unplug_quietly(instance_id)
                self.conductor.instance_build_interrupted(
                    ctxt, instance_id, self.host, "The build was interrupted by a restart "
                    "of the compute service on %s." % self.host)
        elif task == states.POWERING_OFF:
            self.power_tasks.stop(ctxt, instance_id)
        elif task == states.POWERING_ON:
            self.power_tasks.start(ctxt, instance_id)
        else:
            self.conductor.instance_task_failed(
                ctxt, instance_id, self.host, task, self.power_tasks.power_state(instance_id),
                "%s was interrupted by a restart of the compute service on %s."
                % (task, self.host))

    def _build_started_here(self, instance_id):
        """A domain, or at least an instance directory, of the VM is here."""
        if self.driver.instance_exists(instance_id):
            return True
        return os.path.isdir(os.path.join(os.path.abspath(self.conf.compute.instances_path),
                                          instance_id))
