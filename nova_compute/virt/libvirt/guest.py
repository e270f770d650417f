"""Operations on one libvirt domain: power state, waiting with deadlines,
starting that cannot hang past a deadline, power-off and undefine with the
retries and fallbacks libvirt needs."""
import errno
import logging
import os
import threading
import time

import libvirt

from common import exception, states

POWER_STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: states.NOSTATE,
    libvirt.VIR_DOMAIN_RUNNING: states.RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: states.RUNNING,  # waiting on I/O is still running
    libvirt.VIR_DOMAIN_PAUSED: states.PAUSED_POWER,
    libvirt.VIR_DOMAIN_SHUTDOWN: states.SHUTDOWN,  # shutting down
    libvirt.VIR_DOMAIN_SHUTOFF: states.SHUTDOWN,
    libvirt.VIR_DOMAIN_CRASHED: states.CRASHED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: states.SUSPENDED_POWER,
}
RUNNING_STATES = (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED)
STOPPED_STATES = (libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_CRASHED)

# Tried in order: drivers reject flags they do not know (the test driver knows
# no NVRAM/checkpoints) with INVALID_ARG or NO_SUPPORT.
_UNDEFINE_FLAGS = (
    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
    | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM,
    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA,
    0,
)
_UNSUPPORTED = (libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_NO_SUPPORT)
_POWER_OFF_ATTEMPTS = 3
# A start that failed for want of a host resource for a moment (EAGAIN, e.g.
# "failed to load cgroup BPF prog" while many domains start at once) is tried
# again: a failed start leaves the domain defined and shut off.
_START_ATTEMPTS = 4
_EAGAIN_TEXT = os.strerror(errno.EAGAIN)

LOG = logging.getLogger(__name__)


def power_state(state):
    return POWER_STATES.get(state, states.NOSTATE)


def domain_power_state(dom):
    """The power state of a domain; a shut-off domain with a managed-save
    image is 'suspended' (its memory waits on disk)."""
    state = dom.state()[0]
    if state == libvirt.VIR_DOMAIN_SHUTOFF:
        try:
            if dom.hasManagedSaveImage(0):
                return states.SUSPENDED_POWER
        except libvirt.libvirtError:
            pass
    return power_state(state)


def run_before(deadline, timeout, func, what):
    """Run ``func()`` in a thread and give up waiting at ``deadline``.

    For libvirt calls that can block indefinitely (starting a type='kvm' domain
    where KVM cannot run guests): the caller's clean-up then calls
    virDomainDestroy, which kills QEMU and so ends the stuck call too.
    """
    outcome = []

    def call():
        try:
            func()
        except BaseException as exc:  # handed to the waiting thread
            outcome.append(exc)

    thread = threading.Thread(target=call, daemon=True, name=what)
    thread.start()
    thread.join(max(0.0, deadline - time.monotonic()))
    if thread.is_alive():
        raise exception.HypervisorError(reason="%s did not return within %d s"
                                        % (what, timeout))
    if outcome:
        raise outcome[0]


def start_retrying(start, deadline, what):
    """``start()``, again after a short pause while it fails with EAGAIN and
    the deadline allows; any other failure, or the last, is raised."""
    delay = 0.1
    for attempt in range(1, _START_ATTEMPTS + 1):
        try:
            return start()
        except libvirt.libvirtError as exc:
            if (_EAGAIN_TEXT not in str(exc) or attempt == _START_ATTEMPTS
                    or time.monotonic() + delay >= deadline):
                raise
            LOG.warning("%s failed (attempt %d of %d), again in %.1f s: %s",
                        what, attempt, _START_ATTEMPTS, delay, exc)
        time.sleep(delay)
        delay *= 2


def wait_until_running(dom, deadline, timeout):
    """Poll the state with backoff until RUNNING; fail early if it stopped."""
    delay = 0.01
    while True:
        state, reason = dom.state()
        if state in RUNNING_STATES:
            return
        if state in STOPPED_STATES:
            raise exception.HypervisorError(
                reason="domain stopped while starting (state %s, reason %d)"
                % (power_state(state), reason))
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise exception.HypervisorError(
                reason="domain not running %d s after start (state %s)"
                % (timeout, power_state(state)))
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, 0.25)


def power_off(dom):
    """Hard power-off; a domain that is not running or gone is fine."""
    for attempt in range(_POWER_OFF_ATTEMPTS):
        try:
            dom.destroy()
            return
        except libvirt.libvirtError as exc:
            code = exc.get_error_code()
            if code in (libvirt.VIR_ERR_OPERATION_INVALID, libvirt.VIR_ERR_NO_DOMAIN):
                return
            # A QEMU slow to die (host under load): libvirt gives up waiting
            # after its SIGKILL with a timeout or system error; try again.
            if (code not in (libvirt.VIR_ERR_OPERATION_TIMEOUT, libvirt.VIR_ERR_SYSTEM_ERROR)
                    or attempt == _POWER_OFF_ATTEMPTS - 1):
                raise


def undefine(dom):
    """Remove the definition with its managed-save image and snapshot,
    checkpoint and NVRAM metadata; a domain already gone is fine."""
    for flags in _UNDEFINE_FLAGS:
        try:
            if flags:
                dom.undefineFlags(flags)
            else:
                dom.undefine()
            return
        except libvirt.libvirtError as exc:
            code = exc.get_error_code()
            if code == libvirt.VIR_ERR_NO_DOMAIN:
                return
            if code not in _UNSUPPORTED or not flags:
                raise
