"""Compute endpoint: builds and deletes this host's VMs, reports to the conductor.

Handlers are idempotent (RPC is at-least-once) and serialized per VM. Before
building, compute asks the conductor whether the VM is still meant for this
host and still spawning, so a redelivered or overtaken build does nothing."""
import functools
import logging
import os
import threading
import time

from common import exception, states
from common.timeline import EventBuffer, Timeline
from nova_compute.addresses import AddressWatcher
from nova_compute.audit import AuditMixin
from nova_compute.locks import KeyedLocks
from nova_compute.power import PowerActionsMixin
from nova_compute.sync import SyncMixin
from nova_compute.virt.driver import InstanceSpec

LOG = logging.getLogger(__name__)


class ComputeManager(PowerActionsMixin, SyncMixin, AuditMixin):
    # What other daemons may call over compute.<host>; everything else
    # (periodic tasks, start-up work) is this daemon's own business.
    RPC_METHODS = frozenset({
        "build_instance", "terminate_instance", "get_console_output",
        "stop_instance", "start_instance", "reboot_instance", "pause_instance",
        "unpause_instance", "suspend_instance", "resume_instance",
        "audit_report", "audit_fix"})

    # A report is retried this long (s) while the conductor is away, first
    # after report_delay s, then doubling up to 5 s.
    report_deadline = 120.0
    report_delay = 0.5

    def __init__(self, driver, conductor_api, image_cache, conf):
        self.driver = driver
        self.conductor = conductor_api
        self.image_cache = image_cache
        self.conf = conf
        self.host = conf.host
        self.locks = KeyedLocks()
        self.timeline = Timeline(conductor_api, self.host)
        self._cancels = {}
        self._cancels_lock = threading.Lock()
        # Builds in progress (see SyncMixin.sync_power_state): instance id ->
        # monotonic time of the build's own read of the domain state (None
        # before it), and the event syncs that arrived meanwhile.
        self._building = {}
        self._deferred_syncs = {}
        self._building_lock = threading.Lock()
        self.addresses = AddressWatcher(driver, self._report_address)

    def init_host(self, ctxt):
        """At start: settle interrupted tasks, reconcile with the hypervisor,
        and pick up the VMs of this host that still await an IP."""
        self.settle_interrupted(ctxt)
        self.reap_failed_builds(ctxt)
        self.reconcile(ctxt)
        for inst in self._report(self.conductor.instance_list_for_host, ctxt, self.host):
            if inst["vm_state"] == states.ACTIVE and inst["mac_address"] and not inst["ip_address"]:
                self.addresses.expect(inst["id"], inst["mac_address"])

    def _report_address(self, ctxt, instance_id, ip_address):
        self._report(self.conductor.instance_set_address, ctxt, instance_id, self.host,
                     ip_address)

    # -- RPC endpoints ------------------------------------------------------

    def build_instance(self, ctxt, instance, image, action_id=None):
        """``action_id`` (message 1.1): the create's action, sent back with
        the report so that the conductor does not look it up."""
        instance_id = instance["id"]
        with self.locks.lock(instance_id):
            current = self._report(self.conductor.instance_get, ctxt, instance_id)
            if (current is None or current["host"] != self.host
                    or current["task_state"] != states.SPAWNING):
                LOG.info("VM %s: build skipped (now %s)", instance_id,
                         "gone" if current is None else
                         "%s/%s on %s" % (current["vm_state"], current["task_state"],
                                          current["host"]))
                if current is None or current["task_state"] == states.DELETING:
                    self.timeline.finish(ctxt, instance_id, "error",
                                         "VM was deleted before it was built")
                return
            self._build_started(instance_id)
            try:
                self._build(ctxt, instance, image, action_id)
            finally:
                self._build_ended(ctxt, instance_id)

    def _build(self, ctxt, instance, image, action_id):
        """The build proper, under the VM's lock."""
        instance_id = instance["id"]
        started = time.monotonic()
        steps = EventBuffer()  # sent with the outcome, in one message
        timeline = Timeline(steps, self.host)
        try:
            spec = InstanceSpec(id=instance_id, name=instance["name"],
                                vcpus=instance["vcpus"], memory_mb=instance["memory_mb"],
                                root_gb=instance["root_gb"], image_id=image["id"],
                                project_id=instance["project_id"],
                                mac_address=instance.get("mac_address"))
            with timeline.step(ctxt, instance_id, "image fetched"):
                base = self.image_cache.fetch(image["id"], self._image_url(image["id"]),
                                              image["checksum"])
            self.driver.spawn(spec, base,
                              step=functools.partial(timeline.step, ctxt, instance_id))
            power_state = self._build_read_state(instance_id)
        except Exception as e:  # any failure: roll back, VM to ERROR with why
            reason = _reason(e)
            LOG.warning("VM %s: spawn failed, rolling back: %s", instance_id, reason,
                        exc_info=not isinstance(e, exception.MininovaException))
            self._destroy_quietly(instance_id)
            # The conductor decides: another host, or ERROR (and it
            # finishes the action then).
            self._report(self.conductor.instance_build_failed, ctxt, instance_id,
                         self.host, reason, steps.events, action_id)
            return
        LOG.info("VM %s: running after %.0f ms", instance_id,
                 (time.monotonic() - started) * 1000)
        try:
            spawned = self._report(self.conductor.instance_spawned, ctxt, instance_id,
                                   self.host, power_state, steps.events, action_id)
        except exception.ServiceUnavailable:
            # The conductor stayed away past report_deadline, or its answer
            # was lost: the outcome is unknown, so the domain stays. The RPC
            # server delivers the build again later; that build resumes this
            # domain (spawn is idempotent) or finds the VM moved on.
            raise
        except Exception as e:
            # The conductor answered with an error: its transaction rolled
            # back, the VM is still spawning here with no one to report it.
            # Roll back as after a failed step, unless it went live after all.
            reason = "the conductor refused the build's report: %s" % _reason(e)
            LOG.warning("VM %s: %s", instance_id, reason)
            if self._given_up(ctxt, instance_id):
                self._report(self.conductor.instance_build_failed, ctxt, instance_id,
                             self.host, reason, steps.events, action_id)
            return
        if spawned is False and self._given_up(ctxt, instance_id):
            return
        if spec.mac_address:
            self.addresses.expect(instance_id, spec.mac_address)

    def terminate_instance(self, ctxt, instance_id):
        self.addresses.forget(instance_id)
        self._cancel_event(instance_id).set()  # delete wins over a task in progress
        with self.locks.lock(instance_id):
            try:
                with self.timeline.step(ctxt, instance_id, "domain destroyed"):
                    self.driver.destroy(instance_id)
            except exception.MininovaException as e:
                self.timeline.finish(ctxt, instance_id, "error", e.message)
                raise
            LOG.info("VM %s: domain and disk removed", instance_id)
            self._report(self.conductor.instance_terminated, ctxt, instance_id, self.host)
            self.timeline.record(ctxt, instance_id, "reported")
            self.timeline.finish(ctxt, instance_id, "success")
        with self._cancels_lock:
            self._cancels.pop(instance_id, None)

    def get_console_output(self, ctxt, instance_id, lines):
        return self.driver.get_console_output(instance_id, lines)

    # -- builds given up (scheduler watchdog: [compute] build_timeout) --------

    def _given_up(self, ctxt, instance_id):
        """After a "spawned" report that was refused or answered with an
        error, under the VM's lock: True, and the domain destroyed, when the
        VM is not live here (its build was given up - ERROR -, it was deleted
        or moved, or it is still spawning); False when it is live here (the
        report only repeated one that already made it so)."""
        current = self._report(self.conductor.instance_get, ctxt, instance_id)
        if (current is not None and current["host"] == self.host
                and current["vm_state"] in (states.ACTIVE, states.STOPPED, states.PAUSED,
                                            states.SUSPENDED)):
            return False
        LOG.warning("VM %s: built, but no longer wanted here (now %s); destroying the "
                    "domain", instance_id, "gone" if current is None else "%s/%s on %s" % (
                        current["vm_state"], current["task_state"], current["host"]))
        self._destroy_quietly(instance_id)
        return True

    def reap_failed_builds(self, ctxt):
        """Destroy what given-up builds left on this host (a domain, an
        instance directory): the watchdog put them in ERROR while this host
        was away or silent, so they never ran. At start-up and periodically."""
        ids = self._report(self.conductor.instance_failed_builds_for_host, ctxt, self.host)
        if not ids:
            return []
        domains = {i["id"] for i in self.driver.list_instances()}
        instances_path = os.path.abspath(self.conf.compute.instances_path)
        reaped = []
        for instance_id in ids:
            if (instance_id not in domains
                    and not os.path.isdir(os.path.join(instances_path, instance_id))):
                continue
            with self.locks.lock(instance_id):  # after any build still running here
                current = self._report(self.conductor.instance_get, ctxt, instance_id)
                if current is not None and (current["host"] != self.host
                                            or current["vm_state"] != states.ERROR
                                            or current["task_state"] is not None):
                    continue
                LOG.warning("VM %s: its build was given up; destroying what it left here",
                            instance_id)
                self._destroy_quietly(instance_id)
                reaped.append(instance_id)
        return reaped

    # -- periodic -----------------------------------------------------------

    def report_in(self, ctxt):
        """At start, before anything is retried: a heartbeat, committed when
        this returns, so that the scheduler counts this host up again when
        the builds settle_interrupted hands back to it are placed (a host
        that was down for service_down_time would otherwise be filtered out:
        on a one-host cloud, the builds would end in ERROR)."""
        self._report(functools.partial(self.heartbeat, wait=True), ctxt)

    def heartbeat(self, ctxt, wait=False):
        res = self.driver.get_host_resources()
        comp = self.conf.compute
        resources = {
            "vcpus": res["vcpus"],
            "memory_mb": max(0, res["memory_mb"] - comp.reserved_host_memory_mb),
            "local_gb": max(0, res["local_gb"] - comp.reserved_host_disk_gb),
            "hypervisor_type": res.get("hypervisor_type"),
        }
        if wait:  # a call: returns once the conductor committed it
            self.conductor.service_heartbeat(ctxt, self.host, "mininova-compute", resources,
                                             wait=True)
        else:
            self.conductor.service_heartbeat(ctxt, self.host, "mininova-compute", resources)

    # -- helpers ------------------------------------------------------------

    def _image_url(self, image_id):
        return "%s/v1/images/%s/file" % (self.conf.compute.image_api_url.rstrip("/"), image_id)

    def _destroy_quietly(self, instance_id):
        try:
            self.driver.destroy(instance_id)
        except Exception:
            LOG.exception("VM %s: clean-up after a failed spawn failed", instance_id)

    def _report(self, method, *args):
        """Report to the conductor, retrying while it (or its DB) is away: a
        state change compute has made must not be lost."""
        delay, give_up = self.report_delay, time.monotonic() + self.report_deadline
        while True:
            try:
                return method(*args)
            except exception.ServiceUnavailable as e:
                if time.monotonic() > give_up:
                    raise
                LOG.warning("conductor unavailable (%s); retrying in %.1f s", e.message, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)


def _reason(exc):
    """What went wrong, for a VM's fault: a MininovaException's message, or
    the class and text of anything else."""
    if isinstance(exc, exception.MininovaException):
        return exc.message
    return "%s: %s" % (type(exc).__name__, exc)
