"""This host's part of a resize or cold migration (Nova's prep_resize,
resize_instance, finish_resize, confirm_resize, revert_resize,
finish_revert_resize), each called by the conductor's migrate task
(nova_conductor/tasks/migrate.py), which writes every state change: a host
only does the hypervisor's work and answers.

Each step runs under the VM's lock and only while the VM's move in progress
is ``migration_uuid`` with this host in the role the step needs: a step
redelivered after the conductor gave the move up (a host that was away) is
refused (MigrationError) and changes nothing. The driver's post-conditions
make each step idempotent, and leave nothing behind on failure."""
import contextlib
import logging

from common import exception, states
from nova_compute import builder, ownership

LOG = logging.getLogger(__name__)

SOURCE, DEST = "source_host", "dest_host"
# The source takes the VM back on a revert, or when the conductor rolls a
# failed move back (the migration is still "migrating" or "post-migrating").
ROLL_BACK = ("reverting", "migrating", "post-migrating")


class Resizer:
    def __init__(self, driver, conductor, image_cache, locks, timeline, conf):
        """``conductor``: a RetryingConductor (reads only: the conductor's
        task writes); ``timeline``: steps go to the action of the request
        that started the move (its request id travels in the context)."""
        self.driver = driver
        self.conductor = conductor
        self.image_cache = image_cache
        self.locks = locks
        self.timeline = timeline
        self.conf = conf
        self.host = conf.host

    # -- destination ----------------------------------------------------------

    def prep_resize(self, ctxt, instance_id, migration_uuid, image):
        """Check the VM may come here and cache its image (the base of the
        disk finish_resize adopts)."""
        with self._step(ctxt, instance_id, migration_uuid, DEST, "resize_prep",
                        ("pre-migrating",)):
            self._fetch(image)

    def finish_resize(self, ctxt, instance_id, migration_uuid, disk_info, image, flavor,
                      power_on):
        """Define the VM here with ``flavor`` ({vcpus, memory_mb, root_gb})
        on the disk the source set aside, running if ``power_on`` (the
        conductor defines it first, then starts it: a repeat finds it
        defined); its power state after."""
        event = "resize_power_on" if power_on else "resize_finish"
        with self._step(ctxt, instance_id, migration_uuid, DEST, event,
                        ("post-migrating",)) as row:
            base = self._fetch(image)
            instance = self._with_network(dict(row, **_sizes(flavor)))
            same_host = row["migration"]["source_host"] == self.host
            if not same_host and instance.get("ip_address") and instance.get("mac_address"):
                self.driver.plug_fixed_ip(instance_id, instance["mac_address"],
                                          instance["ip_address"])
            try:
                self.driver.finish_migration(builder.instance_spec(instance, row["image_id"]),
                                             disk_info, base, power_on=power_on)
            except Exception:
                if not same_host:
                    self.driver.unplug_fixed_ip(instance_id)
                raise
            return self._power_state(instance_id)

    def revert_resize(self, ctxt, instance_id, migration_uuid):
        """Destroy this host's copy (the source takes the VM back); nothing
        to do when the source is this host (finish_revert_resize replaces
        the resized domain itself)."""
        with self._step(ctxt, instance_id, migration_uuid, DEST, "resize_revert_dest",
                        ("reverting",)) as row:
            if row["migration"]["source_host"] != self.host:
                self.driver.destroy(instance_id)
                self.driver.unplug_fixed_ip(instance_id)

    # -- source ---------------------------------------------------------------

    def resize_instance(self, ctxt, instance_id, migration_uuid):
        """Power the VM off and set its disk aside for the destination:
        the ``disk_info`` finish_resize needs."""
        with self._step(ctxt, instance_id, migration_uuid, SOURCE, "resize_migrate",
                        ("migrating",)) as row:
            return self.driver.migrate_disk_and_power_off(
                instance_id, row["migration"]["dest_host"], self.conf.compute.shutdown_timeout)

    def confirm_resize(self, ctxt, instance_id, migration_uuid):
        """Drop what the source kept for a revert (its domain too, unless the
        VM lives on here)."""
        with self._step(ctxt, instance_id, migration_uuid, SOURCE, "resize_confirm",
                        ("confirming",)) as row:
            self.driver.confirm_migration(instance_id)
            if row["migration"]["dest_host"] != self.host:
                self.driver.unplug_fixed_ip(instance_id)

    def finish_revert_resize(self, ctxt, instance_id, migration_uuid, flavor, power_on):
        """Define the VM here again with its old ``flavor`` on the disk set
        aside, running if ``power_on``; its power state after."""
        with self._step(ctxt, instance_id, migration_uuid, SOURCE, "resize_revert",
                        ROLL_BACK) as row:
            instance = self._with_network(dict(row, **_sizes(flavor)))
            self.driver.finish_revert_migration(
                builder.instance_spec(instance, row["image_id"]), power_on=power_on)
            return self._power_state(instance_id)

    # -- helpers ----------------------------------------------------------------

    @contextlib.contextmanager
    def _step(self, ctxt, instance_id, migration_uuid, role, event, statuses):
        """Under the VM's lock, after the check (the row is yielded): a
        timed step of the move's action."""
        with self.locks.lock(instance_id):
            row = self._check(ctxt, instance_id, migration_uuid, role, statuses)
            try:
                with self.timeline.step(ctxt, instance_id, event, details="on %s" % self.host):
                    yield row
            except Exception as e:
                LOG.warning("VM %s: %s failed on %s: %s", instance_id, event, self.host,
                            exception.describe(e))
                raise
            LOG.info("VM %s: %s done on %s", instance_id, event, self.host)

    def _check(self, ctxt, instance_id, migration_uuid, role, statuses):
        """The VM's row, if its move in progress is ``migration_uuid`` in one
        of ``statuses`` with this host as its ``role``: a step the conductor
        gave up on (its call timed out) and that arrives late is refused, so
        a confirm the conductor undid never drops what a revert needs."""
        row = self.conductor.instance_get(ctxt, instance_id)
        migration = ownership.migration_in_progress(row)
        if (migration is None or migration.get("uuid") != migration_uuid
                or migration.get(role) != self.host or migration.get("status") not in statuses):
            raise exception.MigrationError(
                instance=instance_id, reason="move %s is not %s with %s as its %s (VM %s)" % (
                    migration_uuid, " or ".join(statuses), self.host, role.split("_")[0],
                    ownership.describe(row)))
        return row

    def _fetch(self, image):
        url = "%s/v1/images/%s/file" % (self.conf.compute.image_api_url.rstrip("/"),
                                        image["id"])
        return self.image_cache.fetch(image["id"], url, image["checksum"])

    def _with_network(self, instance):
        """The VM's fixed IP's network, for the config drive."""
        mac = instance.get("mac_address")
        if not instance.get("ip_address") or not mac:
            return instance
        network = self.driver.get_fixed_network(mac)
        return dict(instance, network=network.to_dict()) if network is not None else instance

    def _power_state(self, instance_id):
        try:
            return self.driver.get_info(instance_id)["power_state"]
        except exception.InstanceNotFound:
            return states.NOSTATE


def _sizes(flavor):
    return {"vcpus": flavor["vcpus"], "memory_mb": flavor["memory_mb"],
            "root_gb": flavor["root_gb"]}
