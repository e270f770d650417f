"""Both ends of an evacuation on this host (Nova's rebuild_instance with
``evacuate``, and init_host's _destroy_evacuated_instances).

As destination: under the VM's lock, only while the row puts the VM here in
``rebuild_spawning`` for this evacuation, the VM is rebuilt from its image
(the driver's rebuild with no domain here: a spawn) with its MAC and fixed
IP (a DHCP host entry on this host's network when the address belongs to
it) and its config drive written again; a VM that was stopped is left
stopped. Reported with evacuation_done; on failure nothing is left here and
evacuation_failed says why.

As source, at start-up and before this host reports anything (heartbeat,
power syncs), and again before each periodic reconcile (a host that was only
cut off from the others and never restarted): every copy of a VM evacuated
away from here is destroyed with its DHCP host entry, and the conductor frees
the source allocation the evacuation held, so two hosts never run the same
VM (for longer than a reconcile interval, in the cut-off case)."""
import ipaddress
import logging

from common import exception, states
from nova_compute import builder, ownership

LOG = logging.getLogger(__name__)


class Evacuator:
    def __init__(self, driver, conductor, image_cache, locks, timeline, fixed_ips, conf):
        """``conductor``: a RetryingConductor; ``fixed_ips``: the FixedIps
        whose DHCP entries go with a destroyed copy or a failed rebuild."""
        self.driver = driver
        self.conductor = conductor
        self.image_cache = image_cache
        self.locks = locks
        self.timeline = timeline
        self.fixed_ips = fixed_ips
        self.conf = conf
        self.host = conf.host

    # -- destination -----------------------------------------------------------

    def rebuild_here(self, ctxt, instance_id, image, migration_uuid):
        with self.locks.lock(instance_id):
            current = self.conductor.instance_get(ctxt, instance_id)
            move = ownership.migration_in_progress(current)
            if (current is None or current["host"] != self.host
                    or current["task_state"] != states.REBUILD_SPAWNING
                    or move is None or move.get("uuid") != migration_uuid):
                LOG.info("VM %s: evacuation rebuild skipped (now %s)", instance_id,
                         ownership.describe(current))
                return
            try:
                with self.timeline.step(ctxt, instance_id, "rebuilt from image",
                                        details="on %s" % self.host):
                    power_state = self._rebuild(current, image)
            except Exception as e:
                why = exception.describe(e)
                LOG.warning("VM %s: evacuation rebuild failed, cleaning up: %s", instance_id,
                            why, exc_info=not isinstance(e, exception.MininovaException))
                builder.destroy_quietly(self.driver, instance_id)
                self.fixed_ips.unplug_quietly(instance_id)
                self.conductor.evacuation_failed(ctxt, instance_id, self.host, migration_uuid,
                                                 why)
                return
            LOG.info("VM %s: rebuilt here from image %s (evacuation %s), power %s",
                     instance_id, image["id"], migration_uuid, power_state)
            if not self.conductor.evacuation_done(ctxt, instance_id, self.host,
                                                  migration_uuid, power_state):
                # Deleted meanwhile (its delete waits on the lock and destroys it).
                LOG.info("VM %s: evacuation report refused (now %s)", instance_id,
                         ownership.describe(self.conductor.instance_get(ctxt, instance_id)))

    def _rebuild(self, instance, image):
        instance = self._plug(instance)
        base = self.image_cache.fetch(image["id"], self._image_url(image["id"]),
                                      image["checksum"])
        self.driver.rebuild(builder.instance_spec(instance, image["id"]), base)
        if instance["vm_state"] == states.STOPPED:
            self.driver.power_off(instance["id"], self.conf.compute.shutdown_timeout)
        return self.driver.get_info(instance["id"])["power_state"]

    def _plug(self, instance):
        """The VM's fixed IP on this host's network (its config drive's
        network) when the address belongs to it; else the VM as it is."""
        mac, address = instance.get("mac_address"), instance.get("ip_address")
        if not mac or not address:
            return instance
        network = self.driver.get_fixed_network(mac)
        if network is None:
            return instance
        if ipaddress.IPv4Address(address) not in network.network:
            LOG.warning("VM %s: its fixed IP %s is not in this host's network %s (%s)",
                        instance["id"], address, network.name, network.cidr)
            return instance
        self.driver.plug_fixed_ip(instance["id"], mac, address)
        return dict(instance, network=network.to_dict())

    def _image_url(self, image_id):
        return "%s/v1/images/%s/file" % (self.conf.compute.image_api_url.rstrip("/"), image_id)

    # -- source, at start-up ---------------------------------------------------

    def destroy_evacuated(self, ctxt):
        """Destroy the stale copies of VMs evacuated away from this host; the
        ids destroyed (or found gone)."""
        cleaned = []
        for move in self.conductor.evacuations_to_clean(ctxt, self.host):
            instance_id = move["instance_id"]
            with self.locks.lock(instance_id):
                if move["host"] == self.host:
                    continue  # its evacuation failed and it came back here: not stale
                LOG.warning("VM %s was evacuated from this host (evacuation %s, %s, now on "
                            "%s); destroying the copy left here", instance_id, move["uuid"],
                            move["status"], move["host"])
                try:
                    self.driver.destroy(instance_id)
                    self.fixed_ips.unplug(instance_id)
                    self.conductor.evacuation_source_cleaned(ctxt, move["uuid"], self.host)
                except Exception:  # the next reconcile tries again
                    LOG.exception("VM %s: destroying its evacuated copy failed", instance_id)
                    continue
                cleaned.append(instance_id)
        return cleaned
