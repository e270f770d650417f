"""Power operations on the libvirt domains of this host (a mixin of LibvirtDriver).

Each runs on a domain this host owns, under the driver's per-instance lock,
and ends in the state it promises or raises HypervisorError. Waiting uses the
caller's ``cancel`` event so that a delete never waits behind a clean shutdown.
"""
import logging
import time

import libvirt

from common import exception
from nova_compute.virt import driver
from nova_compute.virt.libvirt import guest

LOG = logging.getLogger(__name__)


class PowerOpsMixin:
    def _owned(self, instance_id):
        dom, owner = self._lookup(driver.validate_instance_id(instance_id))
        if dom is None or owner != self.host_name:
            raise exception.InstanceNotFound(instance=instance_id)
        return dom

    def _power_op(self, instance_id, what, func):
        self._connection()
        with self._host.borrowed_connection(), self._instance_lock(instance_id):
            try:
                return func(self._owned(instance_id))
            except libvirt.libvirtError as exc:
                raise exception.HypervisorError(
                    reason="%s of %s: %s" % (what, instance_id, exc)) from exc

    def power_off(self, instance_id, timeout=0, cancel=None):
        def off(dom):
            if dom.state()[0] in guest.STOPPED_STATES:
                return
            if timeout > 0 and self._clean_shutdown(dom, timeout, cancel):
                return
            guest.power_off(dom)
        self._power_op(instance_id, "power off", off)

    def power_on(self, instance_id):
        def on(dom):
            if dom.state()[0] not in guest.RUNNING_STATES:
                self._ensure_running(dom)
        self._power_op(instance_id, "power on", on)

    def reboot(self, instance_id, hard=False, timeout=0, cancel=None):
        def reboot(dom):
            if hard or not self._clean_shutdown(dom, timeout, cancel):
                guest.power_off(dom)
            self._ensure_running(dom)
        self._power_op(instance_id, "reboot", reboot)

    def pause(self, instance_id):
        def pause(dom):
            if dom.state()[0] != libvirt.VIR_DOMAIN_PAUSED:
                dom.suspend()
        self._power_op(instance_id, "pause", pause)

    def unpause(self, instance_id):
        def unpause(dom):
            if dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED:
                dom.resume()
        self._power_op(instance_id, "unpause", unpause)

    def suspend(self, instance_id):
        """Save the guest's memory to disk and stop it (libvirt managed save)."""
        def suspend(dom):
            if not dom.hasManagedSaveImage(0):
                dom.managedSave(0)
        self._power_op(instance_id, "suspend", suspend)

    def resume(self, instance_id):
        """Start from the managed-save image: the guest goes on where it was."""
        self.power_on(instance_id)

    def _clean_shutdown(self, dom, timeout, cancel):
        """Ask the guest to power off (ACPI) and wait up to ``timeout`` s.
        True if it did; False means the caller should force it."""
        try:
            dom.shutdown()
        except libvirt.libvirtError as exc:
            LOG.info("domain %s refused a clean shutdown (%s); forcing it", dom.UUIDString(), exc)
            return False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if dom.state()[0] in guest.STOPPED_STATES:
                return True
            if cancel is not None and cancel.wait(0.1):
                return False
            if cancel is None:
                time.sleep(0.1)
        LOG.info("domain %s still running %d s after ACPI shutdown; forcing it",
                 dom.UUIDString(), timeout)
        return False
