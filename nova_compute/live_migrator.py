"""Live migration, this host's part (Nova's ComputeManager pre_live_migration,
live_migration, live_migration_abort, post_live_migration_at_destination and
rollback_live_migration_at_destination). The conductor's live-migrate task
(nova_conductor/tasks/live_migrate.py) orchestrates; hosts never talk to one
another but through libvirt.

- Destination, first: the image's base in the cache, then the driver makes
  the VM's directory, an empty overlay on that base and its config drive.
- Source: the copy, under the VM's lock (no power task, delete or second
  move of the VM runs meanwhile), its progress cast to the conductor at most
  every ``progress_interval`` s, stopped when an abort is asked (an Event per
  migration, set even if the abort overtakes the start) or a delete of the
  VM comes (its CancelRegistry event: the delete then finds the VM here);
  its outcome is reported with a call, retried while the conductor is away,
  before the lock is released: the VM's host changes only when the
  conductor hears it, and a delete waiting for the lock follows it.
- Destination, last: the arrived domain made this host's, or whatever arrived
  removed; the removal is retried while this host's hypervisor does not
  answer (e.g. its libvirtd, which broke the migration, restarting).
"""
import logging
import threading
import time

from common import exception, states
from nova_compute import builder, ownership
from nova_compute.inflight import CancelRegistry

LOG = logging.getLogger(__name__)

PROGRESS_INTERVAL = 1.0   # seconds between two progress reports of one migration
CLEANUP_DEADLINE = 120.0  # seconds a destination retries removing what arrived


class LiveMigrator:
    def __init__(self, driver, conductor, image_cache, locks, conf, cancels=None,
                 progress_interval=PROGRESS_INTERVAL, cleanup_deadline=CLEANUP_DEADLINE,
                 sleep=time.sleep):
        """``conductor``: a RetryingConductor (its ``conductor`` attribute, the
        plain client, casts the progress: a lost one is not worth a retry);
        ``cancels``: the CancelRegistry a delete sets (default: a new one)."""
        self.cancels = cancels or CancelRegistry()
        self.driver = driver
        self.conductor = conductor
        self.image_cache = image_cache
        self.locks = locks
        self.conf = conf
        self.host = conf.host
        self.progress_interval = progress_interval
        self.cleanup_deadline = cleanup_deadline
        self._sleep = sleep
        self._aborts = {}   # migration uuid -> Event
        self._guard = threading.Lock()

    # -- destination --------------------------------------------------------------

    def pre_live_migration(self, ctxt, instance_id, migration_uuid, image):
        """The driver's migrate_data for the source; MigrationError (nothing
        left here) when the move is not this host's any more or cannot be."""
        with self.locks.lock(instance_id):
            current = self._move_row(ctxt, instance_id, migration_uuid, "dest_host")
            base = self.image_cache.fetch(image["id"], self._image_url(image["id"]),
                                          image["checksum"])
            spec = builder.instance_spec(self._with_network(current), image["id"])
            migrate_data = self.driver.pre_live_migration(spec, base, {})
        LOG.info("VM %s: ready to arrive here (migration %s)", instance_id, migration_uuid)
        return migrate_data

    def post_live_migration_at_destination(self, ctxt, instance_id, migration_uuid):
        """The VM's power state here once it is this host's domain."""
        with self.locks.lock(instance_id):
            current = self.conductor.instance_get(ctxt, instance_id)
            paused = current is not None and current.get("vm_state") == states.PAUSED
            self.driver.post_live_migration_at_destination(instance_id, paused=paused)
            return self.driver.get_info(instance_id)["power_state"]

    def rollback_live_migration_at_destination(self, ctxt, instance_id, migration_uuid):
        """Remove whatever of the VM arrived here, retrying while the
        hypervisor does not answer; never touches a VM this host owns."""
        give_up, delay = time.monotonic() + self.cleanup_deadline, 0.5
        while True:
            with self.locks.lock(instance_id):
                current = self.conductor.instance_get(ctxt, instance_id)
                if current is not None and current.get("host") == self.host:
                    LOG.warning("VM %s is this host's: no rollback of migration %s here",
                                instance_id, migration_uuid)
                    return False
                try:
                    self.driver.rollback_live_migration_at_destination(instance_id)
                    LOG.info("VM %s: what arrived of migration %s removed", instance_id,
                             migration_uuid)
                    return True
                except Exception as exc:  # e.g. the hypervisor restarting: retried
                    if time.monotonic() > give_up:
                        LOG.error("VM %s: could not remove what arrived of migration %s: %s",
                                  instance_id, migration_uuid, exception.describe(exc))
                        raise
                    LOG.warning("VM %s: removing what arrived of migration %s: %s; retrying",
                                instance_id, migration_uuid, exception.describe(exc))
            self._sleep(delay)
            delay = min(delay * 2, 5.0)

    # -- source -----------------------------------------------------------------

    def live_migration(self, ctxt, instance_id, migration_uuid, dest_host, migrate_data):
        abort = _Either(self._abort_event(migration_uuid), self.cancels.event(instance_id))
        try:
            with self.locks.lock(instance_id):
                try:
                    self._move_row(ctxt, instance_id, migration_uuid, "source_host")
                except exception.MigrationError as exc:
                    LOG.warning("%s; not migrating", exc.message)
                    return
                error, aborted = None, False
                reporter = _Reporter(self.conductor.conductor, ctxt, instance_id,
                                     migration_uuid, self.progress_interval)
                try:
                    self.driver.live_migration(instance_id, dest_host, migrate_data,
                                               progress=reporter, abort=abort)
                except exception.MigrationAborted as exc:
                    error, aborted = exc, True
                except Exception as exc:  # reported: the VM still runs here
                    error = exc
                reporter.flush()
                self._report(ctxt, instance_id, migration_uuid, dest_host, error, aborted)
        finally:
            with self._guard:
                self._aborts.pop(migration_uuid, None)

    def _report(self, ctxt, instance_id, migration_uuid, dest_host, error, aborted):
        if error is None:
            LOG.info("VM %s live-migrated to %s (migration %s)", instance_id, dest_host,
                     migration_uuid)
            self.conductor.live_migration_succeeded(ctxt, instance_id, migration_uuid,
                                                    self.host)
        else:
            LOG.warning("VM %s: live migration %s to %s %s: %s", instance_id, migration_uuid,
                        dest_host, "aborted" if aborted else "failed",
                        exception.describe(error))
            self.conductor.live_migration_failed(ctxt, instance_id, migration_uuid, self.host,
                                                 exception.describe(error), aborted)

    def recover(self, ctxt):
        """At start-up: the live migrations from this host whose copy a
        restart cut short end as the hypervisor leaves them: failed when
        the guest is still here (after stopping a copy libvirtd may still be
        running), succeeded when it went."""
        for row in self.conductor.instance_list_for_host(ctxt, self.host):
            move = ownership.migration_in_progress(row)
            if (move is None or move.get("type") != "live-migration"
                    or move.get("source_host") != self.host or move.get("status") != "running"):
                continue
            with self.locks.lock(row["id"]):
                here = self.driver.settle_live_migration(row["id"])
            LOG.warning("VM %s: live migration %s to %s was cut short by a restart; the guest "
                        "is %s", row["id"], move["uuid"], move.get("dest_host"),
                        "still here" if here else "gone from here")
            self._report(ctxt, row["id"], move["uuid"], move.get("dest_host"),
                         exception.MigrationError(
                             instance=row["id"], reason="the compute service of %s restarted "
                             "during the copy" % self.host) if here else None, False)

    def live_migration_abort(self, ctxt, instance_id, migration_uuid):
        """Stop the copy of ``migration_uuid`` (now, or as soon as it starts)."""
        LOG.info("VM %s: abort of live migration %s asked", instance_id, migration_uuid)
        self._abort_event(migration_uuid).set()

    def _abort_event(self, migration_uuid):
        with self._guard:
            return self._aborts.setdefault(migration_uuid, threading.Event())

    # -- helpers ----------------------------------------------------------------

    def _move_row(self, ctxt, instance_id, migration_uuid, end):
        """The VM's row if ``migration_uuid`` is its live migration in
        progress with this host as its ``end``, else MigrationError."""
        current = self.conductor.instance_get(ctxt, instance_id)
        move = ownership.migration_in_progress(current)
        if (move is None or move.get("uuid") != migration_uuid
                or move.get(end) != self.host or move.get("type") != "live-migration"):
            raise exception.MigrationError(
                instance=instance_id, reason="no live migration %s of it with %s as %s "
                "(VM %s)" % (migration_uuid, self.host, end.replace("_host", ""),
                             ownership.describe(current)))
        return current

    def _with_network(self, instance):
        """The VM's fixed IP's network, for the config drive."""
        mac = instance.get("mac_address")
        if not instance.get("ip_address") or not mac:
            return instance
        network = self.driver.get_fixed_network(mac)
        return dict(instance, network=network.to_dict()) if network is not None else instance

    def _image_url(self, image_id):
        return "%s/v1/images/%s/file" % (self.conf.compute.image_api_url.rstrip("/"), image_id)


def progress_record(progress):
    """The migration record's progress columns from a driver's progress
    dict: memory_* and disk_* when the driver tells them apart, else all of
    it counted as memory."""
    def part(kind, key):
        value = progress.get("%s_%s_bytes" % (kind, key))
        if value is None and kind == "memory":
            value = progress.get("%s_bytes" % key)
        return value
    return {"%s_%s" % (kind, key): part(kind, key)
            for kind in ("memory", "disk") for key in ("total", "processed", "remaining")}


class _Reporter:
    """The driver's progress callback: casts the record's progress at most
    every ``interval`` s, and the last one held back on ``flush``."""

    def __init__(self, conductor_api, ctxt, instance_id, migration_uuid, interval):
        self.conductor_api = conductor_api
        self.ctxt, self.instance_id, self.migration_uuid = ctxt, instance_id, migration_uuid
        self.interval = interval
        self._sent_at = None
        self._pending = None

    def __call__(self, progress):
        self._pending = progress_record(progress)
        now = time.monotonic()
        if self._sent_at is None or now - self._sent_at >= self.interval:
            self._sent_at = now
            self.flush()

    def flush(self):
        record, self._pending = self._pending, None
        if record is None:
            return
        try:
            self.conductor_api.live_migration_progress(self.ctxt, self.instance_id,
                                                       self.migration_uuid, record)
        except Exception as exc:  # progress is best effort
            LOG.debug("VM %s: progress not sent: %s", self.instance_id, exc)


class _Either:
    """Set when either event is (the driver only asks ``is_set``)."""

    def __init__(self, *events):
        self.events = events

    def is_set(self):
        return any(e.is_set() for e in self.events)
