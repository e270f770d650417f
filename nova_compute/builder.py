"""Building this host's VMs, and clearing what given-up builds left.

Before building, the Builder asks the conductor whether the VM is still this
host's and still spawning, so a redelivered or overtaken build does nothing.
A build the scheduler has just placed (message 1.8 ``placed``: the instance
carries its guest fields) skips that question on its first delivery: the VM
was this host's and spawning when it was sent, and the build's report is
conditional, so a VM deleted, given up or moved meanwhile is found out then
and its domain destroyed (``given_up``).
Builds are serialized per VM (the VM's lock) and idempotent: a redelivered
build resumes the domain it finds (spawn is idempotent)."""
import functools
import logging
import os
import time

from common import exception, payloads, states
from common.rpc import server as rpc_server
from common.timeline import EventBuffer, Timeline
from nova_compute import guest_data, ownership
from nova_compute.fixed_ips import FixedIps
from nova_compute.virt.driver import InstanceSpec

LOG = logging.getLogger(__name__)


def destroy_quietly(driver, instance_id):
    """Clean-up after a failure: a failing destroy is logged, not raised."""
    try:
        driver.destroy(instance_id)
    except Exception:
        LOG.exception("VM %s: clean-up after a failed spawn failed", instance_id)


def instance_spec(instance, image_id):
    """The driver's InstanceSpec of a conductor's instance dict."""
    return InstanceSpec(id=instance["id"], name=instance["name"], vcpus=instance["vcpus"],
                        memory_mb=instance["memory_mb"], root_gb=instance["root_gb"],
                        image_id=image_id, project_id=instance["project_id"],
                        mac_address=instance.get("mac_address"),
                        config_drive=guest_data.config_drive(instance))


class Builder:
    def __init__(self, driver, conductor, image_cache, locks, timeline, builds, reconciler,
                 addresses, conf, fixed_ips=None):
        """``conductor``: a RetryingConductor; ``timeline``: the VM actions'
        Timeline; ``builds``: the BuildTracker shared with ``reconciler``,
        which makes the power syncs deferred during a build; ``addresses``:
        the AddressWatcher told about the MAC of each new VM that got no
        fixed IP; ``fixed_ips``: the FixedIps that allocate one before spawn
        (default: on ``driver`` and ``conductor``)."""
        self.fixed_ips = fixed_ips or FixedIps(driver, conductor, conf.host)
        self.driver = driver
        self.conductor = conductor
        self.image_cache = image_cache
        self.locks = locks
        self.timeline = timeline
        self.builds = builds
        self.reconciler = reconciler
        self.addresses = addresses
        self.conf = conf
        self.host = conf.host

    def build(self, ctxt, instance, image, action_id=None, placed=False):
        instance_id = instance["id"]
        with self.locks.lock(instance_id):
            # A domain already here means this build came twice (a publish
            # retried after a lost confirm is a first delivery too): read the
            # VM first, as for a redelivery, rather than spawn it again.
            if (placed and rpc_server.first_delivery()
                    and not self.driver.instance_exists(instance_id)):
                self._run_build(ctxt, instance, image, action_id, checked=False)
                return
            current = self.conductor.instance_get(ctxt, instance_id)
            if (ownership.relation(current, self.host) != ownership.OWNER
                    or current["task_state"] != states.SPAWNING):
                LOG.info("VM %s: build skipped (now %s)", instance_id,
                         ownership.describe(current))
                if current is None or current["task_state"] == states.DELETING:
                    self.timeline.finish(ctxt, instance_id, "error",
                                         "VM was deleted before it was built")
                return
            # The config drive's metadata, keypair and user_data as stored
            # now; where the row has none (or an older conductor sends none),
            # what the build's payload carries stays.
            instance = dict(instance, **{k: current[k] for k in payloads.GUEST_FIELDS
                                         if current.get(k)})
            self._run_build(ctxt, instance, image, action_id)

    def _run_build(self, ctxt, instance, image, action_id, checked=True):
        instance_id = instance["id"]
        self.builds.started(instance_id)
        try:
            self._build(ctxt, instance, image, action_id, checked)
        finally:
            if self.builds.ended(instance_id):
                self._sync_after_build(ctxt, instance_id)

    def _build(self, ctxt, instance, image, action_id, checked=True):
        """The build proper, under the VM's lock; ``checked``: the VM was
        read as this host's and spawning just before (else a refused report
        may mean it was deleted before it was built)."""
        instance_id = instance["id"]
        started = time.monotonic()
        steps = EventBuffer()  # sent with the outcome, in one message
        timeline = Timeline(steps, self.host)
        try:
            with timeline.step(ctxt, instance_id, "network allocated"):
                instance = self.fixed_ips.allocate_for_instance(ctxt, instance)
            spec = instance_spec(instance, image["id"])
            with timeline.step(ctxt, instance_id, "image fetched"):
                base = self.image_cache.fetch(image["id"], self._image_url(image["id"]),
                                              image["checksum"])
            self.driver.spawn(spec, base,
                              step=functools.partial(timeline.step, ctxt, instance_id))
            power_state = self.builds.read_state(
                instance_id, lambda: self.driver.get_info(instance_id)["power_state"])
        except Exception as e:  # any failure: roll back, VM to ERROR with why
            why = exception.describe(e)
            LOG.warning("VM %s: spawn failed, rolling back: %s", instance_id, why,
                        exc_info=not isinstance(e, exception.MininovaException))
            destroy_quietly(self.driver, instance_id)
            self.fixed_ips.unplug_quietly(instance_id)
            # The conductor decides (and frees the fixed IP): another host, or ERROR (and it
            # finishes the action then).
            self.conductor.instance_build_failed(ctxt, instance_id, self.host, why,
                                                 steps.events, action_id)
            return
        LOG.info("VM %s: running after %.0f ms", instance_id,
                 (time.monotonic() - started) * 1000)
        try:
            spawned = self.conductor.instance_spawned(ctxt, instance_id, self.host, power_state,
                                                      steps.events, action_id)
        except exception.ServiceUnavailable:
            # The conductor stayed away past the retry deadline, or its answer
            # was lost: the outcome is unknown, so the domain stays. The RPC
            # server delivers the build again later; that build resumes this
            # domain (spawn is idempotent) or finds the VM moved on.
            raise
        except Exception as e:
            # The conductor answered with an error: its transaction rolled
            # back, the VM is still spawning here with no one to report it.
            # Roll back as after a failed step, unless it went live after all.
            why = "the conductor refused the build's report: %s" % exception.describe(e)
            LOG.warning("VM %s: %s", instance_id, why)
            if self.given_up(ctxt, instance_id, checked):
                self.conductor.instance_build_failed(ctxt, instance_id, self.host, why,
                                                     steps.events, action_id)
            return
        if spawned is False and self.given_up(ctxt, instance_id, checked):
            return
        if spec.mac_address and not instance.get("ip_address"):  # no fixed IP: DHCP
            self.addresses.expect(instance_id, spec.mac_address)

    def _sync_after_build(self, ctxt, instance_id):
        try:
            self.reconciler.sync_power_state(ctxt, instance_id)
        except Exception:
            LOG.exception("VM %s: power sync after its build failed", instance_id)

    def given_up(self, ctxt, instance_id, checked=True):
        """After a "spawned" report that was refused or answered with an
        error, under the VM's lock: True, and the domain destroyed, when the
        VM is not live here (its build was given up - ERROR -, it was deleted
        or moved, or it is still spawning); False when it is live here (the
        report only repeated one that already made it so). ``checked``
        False (a build that did not read the VM first): a VM deleted
        meanwhile gets its action finished as a skipped build's would."""
        current = self.conductor.instance_get(ctxt, instance_id)
        if (ownership.relation(current, self.host) == ownership.OWNER
                and current["vm_state"] in states.RESTING):
            return False
        LOG.warning("VM %s: built, but no longer wanted here (now %s); destroying the "
                    "domain", instance_id, ownership.describe(current))
        destroy_quietly(self.driver, instance_id)
        self.fixed_ips.unplug_quietly(instance_id)
        if not checked and (current is None or current["task_state"] == states.DELETING):
            self.timeline.finish(ctxt, instance_id, "error", "VM was deleted before it was built")
        return True

    def reap_failed_builds(self, ctxt):
        """Destroy what given-up builds left on this host (a domain, an
        instance directory): the watchdog put them in ERROR while this host
        was away or silent, so they never ran. At start-up and periodically."""
        ids = self.conductor.instance_failed_builds_for_host(ctxt, self.host)
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
                current = self.conductor.instance_get(ctxt, instance_id)
                if current is not None and (
                        ownership.relation(current, self.host) != ownership.OWNER
                        or current["vm_state"] != states.ERROR
                        or current["task_state"] is not None):
                    continue
                LOG.warning("VM %s: its build was given up; destroying what it left here",
                            instance_id)
                destroy_quietly(self.driver, instance_id)
                self.fixed_ips.unplug_quietly(instance_id)
                reaped.append(instance_id)
        return reaped

    def _image_url(self, image_id):
        return "%s/v1/images/%s/file" % (self.conf.compute.image_api_url.rstrip("/"), image_id)
