"""What the API does for resize and cold migration (Nova's compute API
resize, migrate, confirm_resize, revert_resize) and the migration listings:
checks, one guarded transaction, a cast to the conductor's migrate task.

A resize writes the new flavor to the VM's row when it is accepted, with
the quota's change in the same transaction (the quota counts the new flavor
from then on; the conductor gives the old one back on a revert or a failed
move)."""
import logging

from common import exception, states
from common.db import api as db_api
from common.db import auth as db_auth
from common.db import hosts as db_hosts
from common.db import vm_migrations
from common.db.models import Instance
from common.timeline import DbSink, Timeline
from nova_api import lookups, vm_locks

LOG = logging.getLogger(__name__)


class MoveService:
    def __init__(self, db, conductor_rpcapi, host="api", quota_defaults=None):
        """``conductor_rpcapi``: the conductor's client (or the API's
        BuildClient, which forwards the three casts)."""
        self.db = db
        self.conductor_rpcapi = conductor_rpcapi
        self.quota_defaults = quota_defaults or {"instances": -1, "cores": -1, "ram": -1}
        self.timeline = Timeline(DbSink(db), host)
        self.lookups = lookups.Lookups(db)

    def resize(self, ctxt, ref, flavor_ref):
        """Resize a VM to the flavor ``flavor_ref``: 400 for its own flavor
        or one whose disk is smaller; QuotaExceeded (403) for a growth the
        project's quota has no room for; 409 as any action (state, task,
        lock)."""
        flavor = self.lookups.flavor(flavor_ref, ctxt.project_id, ctxt.is_admin)
        with self.db.transaction() as s:
            inst = find(s, ctxt, ref)
            allowed, _task = states.ACTION_GUARDS["resize"]
            if inst.task_state is not None or inst.vm_state not in allowed:
                _refuse(ctxt, inst, "resize")  # (the guarded UPDATE decides for good)
            if flavor.id == inst.flavor_id:
                raise exception.Invalid(reason="VM %s already has flavor %s; resize to "
                                        "another flavor" % (inst.name, flavor.name))
            if flavor.root_gb < inst.root_gb:
                raise exception.Invalid(
                    reason="flavor %s has a %d GB disk and VM %s a %d GB disk: a disk never "
                    "shrinks" % (flavor.name, flavor.root_gb, inst.name, inst.root_gb))
        sizes = {"flavor_id": flavor.id, "vcpus": flavor.vcpus,
                 "memory_mb": flavor.memory_mb, "root_gb": flavor.root_gb}
        return self._start(ctxt, ref, "resize", "resize", sizes)

    def migrate(self, ctxt, ref, host=None):
        """Cold-migrate a VM (admins): another host of the scheduler's
        choice, or ``host`` (a compute host other than the VM's: 400)."""
        if host is not None:
            with self.db.transaction() as s:
                try:
                    db_hosts.host_get(s, host)
                except exception.HostNotFound:
                    raise exception.Invalid(reason="no compute host %r" % host) from None
        return self._start(ctxt, ref, "migrate", "migration", None, target_host=host)

    def _start(self, ctxt, ref, action, migration_type, sizes, target_host=None):
        allowed, task = states.ACTION_GUARDS[action]
        with self.db.transaction() as s:
            inst = find(s, ctxt, ref)
            if target_host is not None and target_host == inst.host:
                raise exception.Invalid(reason="VM %s is on host %s already" % (inst.name,
                                                                                 target_host))
            values = {"task_state": task, "fault": None}
            if sizes is not None:
                values.update(sizes)
            moved = inst.host is not None and db_api.instance_update_if(
                s, inst.id, values, expected_task_state=None,
                expected_vm_state=tuple(allowed), **vm_locks.guard(ctxt))
            if moved:
                new_flavor = sizes["flavor_id"] if sizes else inst.flavor_id
                migration_uuid = vm_migrations.create(
                    s, inst.id, migration_type, inst.host, status="accepted",
                    old_flavor_id=inst.flavor_id,
                    new_flavor_id=new_flavor, request_id=ctxt.request_id)
                if sizes is not None:  # last: it locks a usage row of the project
                    db_auth.quota_resize(s, inst.project_id, self.quota_defaults,
                                         sizes["vcpus"] - inst.vcpus,
                                         sizes["memory_mb"] - inst.memory_mb)
            else:
                s.refresh(inst)
        if not moved:
            _refuse(ctxt, inst, action)
        LOG.info("VM %s: %s accepted (migration %s)", inst.id, action, migration_uuid)
        self.timeline.start_action(ctxt, inst.id, action)
        try:
            self.conductor_rpcapi.migrate_server(ctxt, inst.id, migration_uuid,
                                                 target_host=target_host)
        except (exception.ServiceUnavailable, exception.RPCVersionCapError) as e:
            self._undo_start(inst, migration_uuid, task, sizes)
            self.timeline.finish(ctxt, inst.id, "error", e.message)
            _raise_unsent(e)
        self.timeline.record(ctxt, inst.id, "accepted", details="cast to the conductor")
        return migration_uuid

    def _undo_start(self, inst, migration_uuid, task, sizes):
        """Nothing will carry the move out: the VM as it was."""
        with self.db.transaction() as s:
            values = {"task_state": None}
            if sizes is not None:
                values.update(flavor_id=inst.flavor_id, vcpus=inst.vcpus,
                              memory_mb=inst.memory_mb, root_gb=inst.root_gb)
            if db_api.instance_update_if(s, inst.id, values, expected_task_state=task):
                vm_migrations.update_if(s, migration_uuid, {"status": "error"})
                if sizes is not None:
                    db_auth.quota_release(s, inst.project_id, sizes["vcpus"] - inst.vcpus,
                                          sizes["memory_mb"] - inst.memory_mb, instances=0)

    def confirm_resize(self, ctxt, ref):
        self._finish(ctxt, ref, "confirm_resize", "confirming",
                     self.conductor_rpcapi.confirm_resize)

    def revert_resize(self, ctxt, ref):
        self._finish(ctxt, ref, "revert_resize", "reverting",
                     self.conductor_rpcapi.revert_resize)

    def _finish(self, ctxt, ref, action, status, cast):
        allowed, task = states.ACTION_GUARDS[action]
        with self.db.transaction() as s:
            inst = find(s, ctxt, ref)
            migration = vm_migrations.in_progress_for_instance(s, inst.id)
            moved = migration is not None and db_api.instance_update_if(
                s, inst.id, {"task_state": task}, expected_task_state=None,
                expected_vm_state=tuple(allowed), **vm_locks.guard(ctxt))
            if moved:
                moved = vm_migrations.update_if(s, migration.uuid, {"status": status},
                                                expected_status="finished")
                if not moved:
                    raise exception.Conflict(reason="the move of VM %s is %s, not finished"
                                             % (inst.name, migration.status))
            else:
                s.refresh(inst)
        if not moved:
            _refuse(ctxt, inst, action)
        LOG.info("VM %s: %s accepted (migration %s)", inst.id, action, migration.uuid)
        self.timeline.start_action(ctxt, inst.id, action)
        try:
            cast(ctxt, inst.id, migration.uuid)
        except (exception.ServiceUnavailable, exception.RPCVersionCapError) as e:
            with self.db.transaction() as s:
                if db_api.instance_update_if(s, inst.id, {"task_state": None},
                                             expected_task_state=task):
                    vm_migrations.update_if(s, migration.uuid, {"status": "finished"})
            self.timeline.finish(ctxt, inst.id, "error", e.message)
            _raise_unsent(e)
        self.timeline.record(ctxt, inst.id, "accepted", details="cast to the conductor")

    # -- listings -------------------------------------------------------------

    def migrations(self, ctxt, host=None, status=None, migration_type=None,
                   instance_id=None, limit=1000):
        """Migration rows (admins: every project's; the caller checks)."""
        with self.db.transaction() as s:
            return vm_migrations.listing(s, instance_id=instance_id, host=host, status=status,
                                         migration_type=migration_type, limit=limit)

    def vm_migrations(self, ctxt, ref):
        """The VM's migrations, newest first (the VM found as any lookup)."""
        with self.db.transaction() as s:
            inst = find(s, ctxt, ref)
            return inst, vm_migrations.listing(s, instance_id=inst.id)


def find(s, ctxt, ref):
    """The VM ``ref`` of the caller's project, or (an admin's) any live VM
    by id."""
    try:
        return db_api.instance_get_by_ref(s, ctxt.project_id, ref)
    except exception.InstanceNotFound:
        if not (ctxt.is_admin and db_api.is_uuid(ref)):
            raise
        inst = s.get(Instance, str(ref))
        if inst is None or inst.deleted_at is not None:
            raise
        return inst


def _refuse(ctxt, inst, action):
    what = action.replace("_", " ")
    vm_locks.refuse_if_locked(ctxt, inst, what)
    if inst.host is None:
        raise exception.Conflict(reason="cannot %s VM %s: it is not on a host" % (what,
                                                                                  inst.name))
    why = ("while task %s is in progress" % inst.task_state if inst.task_state
           else "while it is %s" % states.status(inst.vm_state, inst.task_state))
    raise exception.Conflict(reason="cannot %s VM %s %s" % (what, inst.name, why))


def _raise_unsent(e):
    if isinstance(e, exception.RPCVersionCapError):
        raise exception.Conflict(reason="the conductors are not all upgraded to take a "
                                 "resize or migration yet") from e
    raise e
