"""What the API does for a live migration (admin only, as Nova's
os-migrateLive and the abort of 2.24): the guarded move to ``migrating`` with
a new migration record in one transaction, then a cast to the conductor's
live-migrate task (nova_conductor/tasks/live_migrate.py); an abort is a cast
to the source host, which stops the copy (the task then rolls back).

Block migration only: every host has its own instances_path, so the disk is
always copied (``block_migration`` "auto" or true; false is a 400)."""
import datetime
import logging

from common import exception, states
from common.db import actions, vm_migrations
from common.db import api as db_api
from common.db import hosts as db_hosts
from common.db.models import utcnow
from common.timeline import DbSink, Timeline

LOG = logging.getLogger(__name__)

# A live migration may be aborted while the copy runs (Nova 2.24's rule).
ABORTABLE = ("running",)


class LiveMigrations:
    def __init__(self, db, build_client, compute_rpcapi, host="api", service_down_time=60):
        """``build_client``: the API's way to the conductor (BuildClient);
        ``service_down_time``: [scheduler]'s, past which a target host is down."""
        self.down_after = datetime.timedelta(seconds=service_down_time)
        self.db = db
        self.build_client = build_client
        self.compute_rpcapi = compute_rpcapi
        self.host = host
        self.timeline = Timeline(DbSink(db), host)

    def start(self, ctxt, ref, host=None, block_migration="auto"):
        """Start moving the VM ``ref`` to ``host`` (None: the scheduler's
        choice); (VM row, migration uuid). Forbidden for non-admins, Invalid
        for a host that is no compute host or the VM's own, Conflict (409
        naming the state) when the VM cannot move now."""
        _admin(ctxt)
        if block_migration is False:
            raise exception.Invalid(reason="block_migration false needs instances_path "
                                    "shared between the hosts, which mininova does not "
                                    "support: use true or \"auto\"")
        allowed, task = states.ACTION_GUARDS["live_migrate"]
        with self.db.transaction() as s:
            inst = db_api.instance_get_by_ref(s, ctxt.project_id, ref)
            if host is not None:
                self._check_target(s, inst, host)
            moved = inst.host is not None and db_api.instance_update_if(
                s, inst.id, {"task_state": task, "fault": None},
                expected_task_state=None, expected_vm_state=tuple(allowed),
                expected_host=inst.host)
            if moved:
                migration = vm_migrations.create(s, inst.id, "live-migration", inst.host,
                                                 dest_host=None, status="accepted",
                                                 request_id=ctxt.request_id)
                actions.action_begin(s, inst.id, ctxt.request_id, "live-migration",
                                     inst.project_id, ctxt.user_id, "accepted", self.host,
                                     "to %s" % (host or "the scheduler's choice"))
            s.refresh(inst)
        if not moved:
            why = ("while task %s is in progress" % inst.task_state if inst.task_state
                   else "while it is %s" % states.status(inst.vm_state, inst.task_state))
            raise exception.Conflict(reason="cannot live-migrate VM %s %s" % (inst.name, why))
        LOG.info("VM %s: live migration %s from %s to %s accepted", inst.id, migration,
                 inst.host, host or "(scheduler)")
        try:
            self.build_client.live_migrate_instance(ctxt, inst.id, migration, host=host)
        except (exception.ServiceUnavailable, exception.RPCVersionCapError) as e:
            with self.db.transaction() as s:  # undo: nothing will carry it out
                vm_migrations.update_if(s, migration, {"status": "error"},
                                        expected_status=("accepted",))
                db_api.instance_update_if(s, inst.id, {"task_state": None},
                                          expected_task_state=task)
            self.timeline.finish(ctxt, inst.id, "error", e.message)
            if isinstance(e, exception.RPCVersionCapError):
                raise exception.Conflict(reason="the conductors are not all upgraded to "
                                         "live-migrate yet") from e
            raise
        return inst, migration

    def _check_target(self, s, inst, host):
        """400 (Nova's answer to os-migrateLive) unless ``host`` is a compute
        host other than the VM's, up and enabled: the scheduler checks its
        room and the VM's filters."""
        if host == inst.host:
            raise exception.Invalid(reason="VM %s is on %s already: the target host must be "
                                    "another one" % (inst.name, host))
        try:
            svc, _node = db_hosts.host_get(s, host)
        except exception.HostNotFound:
            raise exception.Invalid(reason="compute host %s could not be found"
                                    % str(host)[:255]) from None
        if svc.last_heartbeat is None or utcnow() - svc.last_heartbeat > self.down_after:
            raise exception.Invalid(reason="the target host %s is down (no heartbeat within "
                                    "service_down_time %d s)"
                                    % (host, self.down_after.total_seconds()))
        if svc.disabled:
            raise exception.Invalid(reason="the target host %s is disabled%s" % (
                host, ": %s" % svc.disabled_reason if svc.disabled_reason else ""))

    def abort(self, ctxt, ref, migration_uuid=None):
        """Stop the VM's live migration in progress (``migration_uuid``, or
        whichever it is). NotFound when there is none; Conflict unless its
        copy runs (before, nothing to stop yet; after, too late)."""
        _admin(ctxt)
        with self.db.transaction() as s:
            inst = db_api.instance_get_by_ref(s, ctxt.project_id, ref)
            move = vm_migrations.in_progress_for_instance(s, inst.id)
        if (move is None or move.migration_type != "live-migration"
                or (migration_uuid is not None and move.uuid != migration_uuid)):
            raise exception.MigrationNotFound(migration=migration_uuid or
                                              "(live migration of VM %s in progress)"
                                              % inst.name)
        if move.status not in ABORTABLE:
            raise exception.Conflict(reason="cannot abort live migration %s of VM %s while "
                                     "it is %s" % (move.uuid, inst.name, move.status))
        self.compute_rpcapi.live_migration_abort(ctxt, move.source_host, inst.id, move.uuid)
        with self.db.transaction() as s:  # a step of the live migration's own action
            request_id = vm_migrations.get(s, move.uuid).request_id or ctxt.request_id
            actions.event_record(s, inst.id, request_id, "live-migration abort asked",
                                 host=self.host, finish_time=utcnow(), result=actions.SUCCESS,
                                 details="by request %s, cast to compute.%s" % (
                                     ctxt.request_id, move.source_host))
        LOG.info("VM %s: abort of live migration %s cast to %s", inst.id, move.uuid,
                 move.source_host)
        return move.uuid


def _admin(ctxt):
    if not ctxt.is_admin:
        raise exception.Forbidden("Live migration needs the admin role.")
