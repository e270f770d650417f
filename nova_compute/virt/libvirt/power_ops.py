"""Power operations on one libvirt domain of this host.

Each function gets a domain the driver has looked up as ours, under its
per-instance lock, and ends in the state it promises or raises (libvirtError
becomes HypervisorError in the driver). Waiting uses the caller's ``cancel``
event so that a delete never waits behind a clean shutdown.
"""
import logging
import time

import libvirt

from nova_compute.virt.libvirt import guest

LOG = logging.getLogger(__name__)


def power_off(dom, timeout=0, cancel=None, shutdown=None):
    """Shut off: a clean shutdown within ``timeout`` s, else forced.
    ``shutdown``: the clean shutdown to use (default clean_shutdown)."""
    if dom.state()[0] in guest.STOPPED_STATES:
        return
    if timeout > 0 and (shutdown or clean_shutdown)(dom, timeout, cancel):
        return
    guest.power_off(dom)


def reboot(dom, ensure_running, hard=False, timeout=0, cancel=None, shutdown=None):
    """Restart: soft (clean shutdown within ``timeout``, else forced) or
    hard; then ``ensure_running(dom)``."""
    if hard or not (shutdown or clean_shutdown)(dom, timeout, cancel):
        guest.power_off(dom)
    ensure_running(dom)


def pause(dom):
    if dom.state()[0] != libvirt.VIR_DOMAIN_PAUSED:
        dom.suspend()


def unpause(dom):
    if dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED:
        dom.resume()


def suspend(dom):
    """Save the guest's memory to disk and stop it (libvirt managed save)."""
    if not dom.hasManagedSaveImage(0):
        dom.managedSave(0)


def clean_shutdown(dom, timeout, cancel):
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
