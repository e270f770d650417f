"""Scheduler endpoint: placement only, like Nova's select_destinations.

The conductor's build task (nova_conductor/tasks/build.py) calls
``select_destinations``: filter, weigh, claim atomically, answer the host.
The scheduler casts to no compute host. It is idempotent because RPC is
at-least-once: a repeated request for a VM that already has a host and an
allocation answers that host again instead of claiming twice."""
import logging
import time

from common import exception, metrics, payloads, states
from common.db import actions, allocations
from common.db import api as db_api
from common.db import hosts as db_hosts
from common.db import images as db_images
from common.db import instance_metadata
from common.db.models import utcnow
from common.rpc import policy
from nova_scheduler import filters
from nova_scheduler.host_state import HostStateCache
from nova_scheduler.move_placement import MovePlacement

LOG = logging.getLogger(__name__)


class SchedulerManager:
    # What other daemons may call over the scheduler topic (see rpcapi.py).
    RPC_METHODS = frozenset({"select_destinations", "schedule_instance",
                             "select_move_destination"})
    # Who may call each (common.rpc.policy): the conductor's placements;
    # schedule_instance from APIs older than the conductor's build task.
    RPC_POLICY = {
        "select_destinations": policy.allow("conductor", user_request=True),
        "select_move_destination": policy.allow("conductor", user_request=True),
        "schedule_instance": policy.allow("api", "conductor", user_request=True),
    }

    def __init__(self, db, conductor_rpcapi, conf):
        """``conductor_rpcapi``: where a create from an API older than the
        conductor's build task goes (``schedule_instance``)."""
        self.db = db
        self.conductor_rpcapi = conductor_rpcapi
        self.conf = conf
        self.host_cache = HostStateCache(db)
        self.moves = MovePlacement(db, self.host_cache, conf, self._request_spec, self._ratios)

    def _ratios(self):
        sch = self.conf.scheduler
        return sch.cpu_allocation_ratio, sch.ram_allocation_ratio, sch.disk_allocation_ratio

    def schedule_instance(self, ctxt, instance_id, action_id=None):
        """(messages 1.0, 1.1) A create from an API that predates the
        conductor's build task: handed to the conductor, which calls
        ``select_destinations`` back and casts the build. A malformed one
        is dead-lettered here, where it arrived (TypeError)."""
        _check_instance_id(instance_id)
        self.conductor_rpcapi.build_instances(ctxt, instance_id, action_id=action_id)

    def select_destinations(self, ctxt, instance_id, action_id=None):
        """(message 1.2) Place the VM: {"host", "instance", "image",
        "action_id"} (what the compute's build needs, read here once), or None
        when the VM no longer waits for a host. A fresh placement's instance
        carries ``payloads.GUEST_FIELDS`` too (a repeated answer does not:
        its build reads the VM first). Raises InstanceNotFound,
        ImageNotFound or NoValidHost; the conductor records those."""
        _check_instance_id(instance_id)
        try:
            return self._select(ctxt, instance_id, action_id)
        except exception.ImageNotFound:
            metrics.scheduling_failed("image unavailable")
            raise

    def select_move_destination(self, ctxt, instance_id, migration_uuid, requested_host=None,
                                allow_source=False):
        """(message 1.3) Place the VM's move ``migration_uuid`` on another
        host than its source (``requested_host`` only, when given): the
        destination, or None when the move no longer waits for one.
        InstanceNotFound, MigrationNotFound or NoValidHost. ``allow_source``
        (message 1.4): the source may be chosen too (a resize with [compute]
        allow_resize_to_same_host)."""
        _check_instance_id(instance_id)
        return self.moves.select(ctxt, instance_id, migration_uuid, requested_host,
                                 allow_source=allow_source)

    def _select(self, ctxt, instance_id, action_id):
        with self.db.transaction() as s:
            inst = db_api.instance_row(s, instance_id)
            if inst is None:
                raise exception.InstanceNotFound(instance=instance_id)
            image_row = db_images.image_row(s, inst.image_id)
            if image_row is None:
                raise exception.ImageNotFound(image=inst.image_id)
            image = payloads.image(image_row)
            # The create's action: its events (here, on compute, in the
            # conductor) are then written by id, without a lookup each. A
            # request without one (an old API, the watchdog's resend): the
            # action of its request.
            if action_id is None:
                action_id = actions.action_id(s, instance_id, ctxt.request_id)
            instance = payloads.instance(inst)
            if inst.task_state == states.SPAWNING and allocations.holds_any(s, instance_id):
                LOG.info("VM %s already placed on %s; answering it again", instance_id, inst.host)
                return _selection(instance, image, action_id)
            if inst.task_state != states.SCHEDULING:
                LOG.info("VM %s is %s/%s; not scheduling", instance_id, inst.vm_state, inst.task_state)
                return None
            spec = self._request_spec(s, inst)
            # Sent with a fresh placement only: the compute then builds
            # without reading the VM again (compute message 1.8 ``placed``).
            guest = instance_metadata.guest_data(s, instance_id)
            # The hosts as of the request or later: its creation, or its
            # return to 'scheduling' after a failed or interrupted build
            # (after which a restarted host has reported in: see
            # ComputeManager.report_in).
            requested_at = max(inst.created_at, inst.updated_at or inst.created_at)
            self.host_cache.refresh_if_needed(requested_at, session=s)
        host = self._place(ctxt, instance_id, spec, action_id, requested_at)
        if host is None:
            return None
        instance.update(guest, host=host, task_state=states.SPAWNING)
        return _selection(instance, image, action_id)

    def _place(self, ctxt, instance_id, spec, action_id, requested_at):
        """Claim a host for the VM; its name, or None (the VM left
        'scheduling' meanwhile). NoValidHost when no host has room.

        The choice is made in memory under the lock, and counted there at
        once (so that the next choice of this process sees it, as if placed
        one at a time); the claim in the DB is made outside the lock. A claim
        the DB refuses (another scheduler used the room) re-reads the hosts
        and chooses again among the others."""
        started = time.monotonic()
        self.host_cache.refresh_if_needed(requested_at)
        lost, notes = set(), []
        while True:
            with self.host_cache.lock:
                hosts = self.host_cache.hosts()
                candidates, explanation = filters.filter_hosts(self.conf, hosts, spec)
                candidates = [h for h in candidates if h.host not in lost]
                chosen = filters.weigh_hosts(self.conf, candidates)[0] if candidates else None
                if chosen is not None:
                    reservation = self.host_cache.reserve(chosen.host, spec.vcpus,
                                                           spec.memory_mb, spec.root_gb)
            if chosen is None:
                break
            placed = self._claim(ctxt, instance_id, chosen.host, spec, action_id, reservation)
            if placed is None:
                return None  # the VM left 'scheduling' meanwhile (deleted)
            if placed:
                LOG.info("VM %s placed on %s (%d candidates, %.1f ms)", instance_id, chosen.host,
                         len(candidates), (time.monotonic() - started) * 1000)
                metrics.scheduled(started)
                return chosen.host
            lost.add(chosen.host)
            notes.append("claim on %s lost to a concurrent request" % chosen.host)
            self.host_cache.mark_stale()
            self.host_cache.refresh_if_needed()
            if spec.group_policy:
                with self.db.transaction() as s:  # refresh what the group occupies
                    spec.group_hosts = frozenset(db_hosts.group_hosts(s, spec.group_id,
                                                                      instance_id))
        explanation = "; ".join([explanation] + notes)
        metrics.no_valid_host(hosts, candidates, explanation)
        if spec.attempts:
            explanation += ". Earlier attempts: " + "; ".join(
                "%s: %s" % (t["host"], t["error"]) for t in spec.attempts)
        LOG.warning("VM %s: no valid host: %s", instance_id, explanation)
        raise exception.NoValidHost(reason=explanation)

    def _request_spec(self, s, inst):
        tried = tuple(db_api.instance_attempts(inst))
        # A host whose restart interrupted the build did not fail it: not excluded.
        spec = filters.RequestSpec(inst.id, inst.vcpus, inst.memory_mb, inst.root_gb,
                                   tried_hosts=frozenset(a["host"] for a in tried
                                                         if not a.get("interrupted")),
                                   attempts=tried)
        if inst.group_id:
            try:
                group = db_hosts.group_get(s, inst.project_id, inst.group_id)
            except exception.ServerGroupNotFound:
                return spec  # the group was deleted: no constraint left
            spec.project_id, spec.group_id, spec.group_policy = (inst.project_id, group.id,
                                                                  group.policy)
            spec.group_hosts = frozenset(db_hosts.group_hosts(s, group.id, inst.id))
        return spec

    def _claim(self, ctxt, instance_id, host, spec, action_id, reservation):
        """True: claimed and VM moved to spawning on host. False: no room (or
        the group's policy no longer allows the host). None: the VM is no
        longer waiting for a host. Anything but True gives the in-memory
        reservation back."""
        done = False
        try:
            with self.db.transaction() as s:
                if spec.group_policy:
                    # Lock the group, then re-check against the members placed
                    # by concurrent requests since the filters ran.
                    db_hosts.group_get(s, spec.project_id, spec.group_id, lock=True)
                    if not filters.host_passes_group_policy(
                            spec, host, db_hosts.group_hosts(s, spec.group_id, instance_id)):
                        return False
                generation = allocations.allocate(s, instance_id, host, spec.resources,
                                                  self._ratios())
                if not generation:
                    return False
                # Before the COMMIT: until then no snapshot shows this
                # generation, so the reservation keeps being counted.
                reservation.claimed(generation)
                now = utcnow()
                if not db_api.instance_start_spawning(
                        s, instance_id, host, states.SCHEDULING, states.SPAWNING, now):
                    raise _Gone()
                event = {"event": "scheduled", "host": self.conf.host, "start_time": now,
                         "finish_time": now, "result": "success",
                         "details": "on host %s" % host}
                if action_id is None:  # a request that came without its action
                    action_id = actions.action_id_or_unknown(s, instance_id, ctxt.request_id)
                actions.events_add(s, action_id, [event])
            done = True
            return True
        except _Gone:
            return None
        finally:
            if not done:
                reservation.cancel()


def _check_instance_id(instance_id):
    if not isinstance(instance_id, str):
        raise TypeError("instance_id must be a string, not %s" % type(instance_id).__name__)


def _selection(instance, image, action_id):
    return {"host": instance["host"], "instance": instance, "image": image,
            "action_id": action_id}


class _Gone(Exception):
    """Rolls back a claim whose VM left 'scheduling' meanwhile."""
