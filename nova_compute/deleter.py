"""Deleting a VM's domain and disk on this host, then reporting it gone.

A delete wins over a task in progress: it cancels the VM's waits first (a
clean shutdown stops waiting), then takes the VM's lock. Idempotent: a
domain or directory already gone is a success."""
import logging

from common import exception
from nova_compute.fixed_ips import FixedIps

LOG = logging.getLogger(__name__)


class Deleter:
    def __init__(self, driver, conductor, locks, timeline, cancels, addresses, host,
                 fixed_ips=None):
        """``conductor``: a RetryingConductor; ``cancels``: the CancelRegistry
        the VM's power tasks wait on; ``addresses``: the AddressWatcher;
        ``fixed_ips``: the FixedIps whose DHCP host entry goes with the domain
        (default: on ``driver``)."""
        self.fixed_ips = fixed_ips or FixedIps(driver, conductor, host)
        self.driver = driver
        self.conductor = conductor
        self.locks = locks
        self.timeline = timeline
        self.cancels = cancels
        self.addresses = addresses
        self.host = host

    def terminate(self, ctxt, instance_id):
        self.addresses.forget(instance_id)
        self.cancels.cancel(instance_id)
        with self.locks.lock(instance_id):
            try:
                with self.timeline.step(ctxt, instance_id, "domain destroyed"):
                    self.driver.destroy(instance_id)
                    # Before the report that frees the address in the DB.
                    self.fixed_ips.unplug(instance_id)
            except exception.MininovaException as e:
                self.timeline.finish(ctxt, instance_id, "error", e.message)
                raise
            LOG.info("VM %s: domain and disk removed", instance_id)
            self.conductor.instance_terminated(ctxt, instance_id, self.host)
            self.timeline.record(ctxt, instance_id, "reported")
            self.timeline.finish(ctxt, instance_id, "success")
        self.cancels.forget(instance_id)
