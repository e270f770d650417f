"""Scheduler endpoint: filter, weigh, claim atomically, cast the build.

Handlers are idempotent because RPC is at-least-once: a redelivered request for
a VM that already has a host and a claim re-casts the build (compute's build
is idempotent too) instead of claiming twice."""
import json
import logging
import threading
import time

from common import exception, metrics, payloads, states
from common.db import actions
from common.db import api as db_api
from common.db import hosts as db_hosts
from common.db.models import utcnow
from common.timeline import DbSink, Timeline
from nova_scheduler import filters

LOG = logging.getLogger(__name__)



class SchedulerManager:
    def __init__(self, db, compute_rpcapi, conf):
        self.db = db
        self.compute_rpcapi = compute_rpcapi
        self.conf = conf
        self.timeline = Timeline(DbSink(db), conf.host)
        self._placement_lock = threading.Lock()

    def _ratios(self):
        sch = self.conf.scheduler
        return sch.cpu_allocation_ratio, sch.ram_allocation_ratio, sch.disk_allocation_ratio

    def schedule_instance(self, ctxt, instance_id):
        try:
            self._schedule(ctxt, instance_id)
        except exception.InstanceNotFound:
            LOG.info("VM %s is gone; nothing to schedule", instance_id)
            self.timeline.finish(ctxt, instance_id, "error",
                                 "VM was deleted before it was scheduled")
        except exception.ImageNotFound as e:
            metrics.scheduling_failed("image unavailable")
            self._fail(ctxt, instance_id, "image unavailable", e.message)

    def _schedule(self, ctxt, instance_id):
        with self.db.transaction() as s:
            inst = db_api.instance_get(s, instance_id)
            image = payloads.image(db_api.image_get(s, inst.image_id))
            if inst.task_state == states.SPAWNING and db_api.claim_get(s, instance_id):
                LOG.info("VM %s already placed on %s; re-casting the build", instance_id, inst.host)
                return self._cast_build(ctxt, inst, image)
            if inst.task_state != states.SCHEDULING:
                LOG.info("VM %s is %s/%s; not scheduling", instance_id, inst.vm_state, inst.task_state)
                return
            spec = self._request_spec(s, inst)
        # One placement at a time per scheduler process: each decision sees the
        # claims of the one before, so a burst spreads instead of piling onto
        # the host that looked emptiest to all of them at once. (Claims stay
        # atomic in the DB for several schedulers.)
        with self._placement_lock:
            host = self._place(ctxt, instance_id, spec)
        if host is not None:
            inst.host, inst.task_state = host, states.SPAWNING
            self._cast_build(ctxt, inst, image)

    def _place(self, ctxt, instance_id, spec):
        """Claim a host for the VM; its name, or None (VM gone or in ERROR)."""
        with self.db.transaction() as s:
            hosts = [filters.HostState(svc, node) for svc, node in db_api.compute_hosts(s)]
        started = time.monotonic()
        candidates, explanation = filters.filter_hosts(self.conf, hosts, spec)
        for host in filters.weigh_hosts(self.conf, candidates):
            placed = self._claim(ctxt, instance_id, host.host, spec)
            if placed is None:
                return None  # the VM left 'scheduling' meanwhile (deleted)
            if placed:
                LOG.info("VM %s placed on %s (%d candidates, %.1f ms)", instance_id, host.host,
                         len(candidates), (time.monotonic() - started) * 1000)
                metrics.scheduled(started)
                return host.host
            explanation += "; claim on %s lost to a concurrent request" % host.host
            if spec.group_policy:
                with self.db.transaction() as s:  # refresh what the group occupies
                    spec.group_hosts = frozenset(db_hosts.group_hosts(s, spec.group_id,
                                                                      instance_id))
        metrics.no_valid_host(hosts, candidates, explanation)
        if spec.tried_hosts:
            with self.db.transaction() as s:
                tried = attempts(db_api.instance_get(s, instance_id))
            explanation += ". Earlier attempts: " + "; ".join(
                "%s: %s" % (t["host"], t["error"]) for t in tried)
        self._no_valid_host(ctxt, instance_id, explanation)
        return None

    def _request_spec(self, s, inst):
        spec = filters.RequestSpec(inst.id, inst.vcpus, inst.memory_mb, inst.root_gb,
                                   tried_hosts=frozenset(a["host"] for a in attempts(inst)))
        if inst.group_id:
            try:
                group = db_hosts.group_get(s, inst.project_id, inst.group_id)
            except db_hosts.ServerGroupNotFound:
                return spec  # the group was deleted: no constraint left
            spec.group_id, spec.group_policy = group.id, group.policy
            spec.group_hosts = frozenset(db_hosts.group_hosts(s, group.id, inst.id))
        return spec

    def _claim(self, ctxt, instance_id, host, spec):
        """True: claimed and VM moved to spawning on host. False: no room (or
        the group's policy no longer allows the host). None: the VM is no
        longer waiting for a host."""
        try:
            with self.db.transaction() as s:
                if spec.group_policy:
                    # Lock the group, then re-check against the members placed
                    # by concurrent requests since the filters ran.
                    inst = db_api.instance_get(s, instance_id)
                    db_hosts.group_get(s, inst.project_id, spec.group_id, lock=True)
                    if not filters.host_passes_group_policy(
                            spec, host, db_hosts.group_hosts(s, spec.group_id, instance_id)):
                        return False
                if not db_api.claim(s, instance_id, host, spec.vcpus, spec.memory_mb,
                                    spec.root_gb, self._ratios()):
                    return False
                if not db_api.instance_update_if(
                        s, instance_id, {"host": host, "task_state": states.SPAWNING},
                        expected_task_state=states.SCHEDULING):
                    raise _Gone()
                now = actions.format_time(utcnow())
                actions.events_add(s, instance_id, ctxt.request_id, [{
                    "event": "scheduled", "host": self.conf.host, "start_time": now,
                    "finish_time": now, "result": "success", "details": "on host %s" % host}])
                return True
        except _Gone:
            return None

    def _no_valid_host(self, ctxt, instance_id, explanation):
        LOG.warning("VM %s: no valid host: %s", instance_id, explanation)
        self._fail(ctxt, instance_id, "no valid host", "No valid host was found. " + explanation)

    def _fail(self, ctxt, instance_id, event, fault):
        with self.db.transaction() as s:
            db_api.instance_update_if(
                s, instance_id, {"vm_state": states.ERROR, "task_state": None, "fault": fault},
                expected_task_state=states.SCHEDULING)
        self.timeline.record(ctxt, instance_id, event, result="error", details=fault)
        self.timeline.finish(ctxt, instance_id, "error", fault)

    def _cast_build(self, ctxt, inst, image):
        self.compute_rpcapi.build_instance(ctxt, inst.host, payloads.instance(inst), image)


def attempts(inst):
    """The hosts (and errors) a VM's build already failed on."""
    return json.loads(inst.sched_attempts) if inst.sched_attempts else []


class _Gone(Exception):
    """Rolls back a claim whose VM left 'scheduling' meanwhile."""
