"""Placement of a VM that moves to another host (Nova's select_destinations
for a move): the same filters and weighers as a build, without the VM's
source host, optionally restricted to the host the admin asked for.

The claim is one transaction: the VM's allocation on its source passes to
its migration record (the consumer that keeps holding the source while the
move runs), and the VM itself allocates the destination, which the record
then names ("pre-migrating"). Idempotent (RPC is at-least-once): a repeated
request for a move that already has its destination answers it again."""
import logging
import time

from common import exception, metrics
from common.db import allocations, vm_migrations
from common.db import api as db_api
from nova_scheduler import filters

LOG = logging.getLogger(__name__)


class MovePlacement:
    def __init__(self, db, host_cache, conf, request_spec, ratios):
        """``request_spec(s, inst)``: the VM's RequestSpec (its group policy);
        ``ratios()``: the allocation ratios (cpu, ram, disk)."""
        self.db = db
        self.host_cache = host_cache
        self.conf = conf
        self.request_spec = request_spec
        self.ratios = ratios

    def select(self, ctxt, instance_id, migration_uuid, requested_host=None,
               allow_source=False):
        """The destination's name, or None when the move is no longer waiting
        for one. InstanceNotFound, MigrationNotFound or NoValidHost.
        ``allow_source``: the source is a candidate too (a resize on one host:
        the VM's new flavor is claimed there beside the old one, which its
        migration record holds)."""
        with self.db.transaction() as s:
            inst = db_api.instance_row(s, instance_id)
            if inst is None:
                raise exception.InstanceNotFound(instance=instance_id)
            move = vm_migrations.in_progress_by_uuid(s, migration_uuid)
            if move is None or move.instance_id != instance_id:
                raise exception.MigrationNotFound(migration=migration_uuid)
            if move.dest_host is not None:
                if allocations.on_host(s, instance_id, move.dest_host) is not None:
                    LOG.info("VM %s: move %s already placed on %s; answering it again",
                             instance_id, migration_uuid, move.dest_host)
                    return move.dest_host
                return None
            spec = self.request_spec(s, inst)
            source = move.source_host
        spec.tried_hosts = frozenset()  # a move is not a build's retry
        started = time.monotonic()
        self.host_cache.mark_stale()  # the source's heartbeat must be current
        self.host_cache.refresh_if_needed()
        lost, notes = set(), []
        while True:
            with self.host_cache.lock:
                hosts = self._eligible(self.host_cache.hosts(), None if allow_source else source,
                                       requested_host, notes)
                candidates, explanation = filters.filter_hosts(self.conf, hosts, spec)
                candidates = [h for h in candidates if h.host not in lost]
                chosen = filters.weigh_hosts(self.conf, candidates)[0] if candidates else None
                if chosen is not None:
                    reservation = self.host_cache.reserve(chosen.host, spec.vcpus,
                                                           spec.memory_mb, spec.root_gb)
            if chosen is None:
                break
            placed = self._claim(instance_id, migration_uuid, chosen.host, spec, reservation)
            if placed is None:
                return None
            if placed:
                LOG.info("VM %s: move %s placed on %s (%d candidates, %.1f ms)", instance_id,
                         migration_uuid, chosen.host, len(candidates),
                         (time.monotonic() - started) * 1000)
                return chosen.host
            lost.add(chosen.host)
            notes.append("claim on %s lost to a concurrent request" % chosen.host)
            self.host_cache.mark_stale()
            self.host_cache.refresh_if_needed()
        explanation = "; ".join([explanation] + notes)
        metrics.no_valid_host(hosts, candidates, explanation)
        LOG.warning("VM %s: no valid host for move %s: %s", instance_id, migration_uuid,
                    explanation)
        raise exception.NoValidHost(reason=explanation)

    @staticmethod
    def _eligible(hosts, source, requested_host, notes):
        kept = [h for h in hosts if h.host != source]
        if requested_host is not None:
            kept = [h for h in kept if h.host == requested_host]
            if not kept:
                notes.append("the requested host %s is not a compute host here"
                             % requested_host)
        return kept

    def _claim(self, instance_id, migration_uuid, host, spec, reservation):
        """True: claimed. False: no room on ``host``. None: the move ended or
        was placed meanwhile. Anything but True gives the reservation back."""
        done = False
        try:
            with self.db.transaction() as s:
                move = vm_migrations.in_progress_by_uuid(s, migration_uuid)
                if move is None or move.dest_host is not None:
                    return None
                if not allocations.holds_any(s, migration_uuid):
                    allocations.move_allocations(s, instance_id, migration_uuid)
                generation = allocations.allocate(s, instance_id, host, spec.resources,
                                                  self.ratios())
                if not generation:
                    raise _Undo(False)
                reservation.claimed(generation)
                if not vm_migrations.update_if(s, migration_uuid,
                                               {"dest_host": host, "status": "pre-migrating"},
                                               expected_status=("accepted",)):
                    raise _Undo(None)
            done = True
            return True
        except _Undo as e:
            return e.result
        finally:
            if not done:
                reservation.cancel()


class _Undo(Exception):
    """Rolls a claim back; ``result``: what _claim answers then."""

    def __init__(self, result):
        super().__init__(result)
        self.result = result
