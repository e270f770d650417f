"""Evacuate (admin): rebuild elsewhere a VM whose host is down, as Nova's
compute API's evacuate.

Refused, naming why: a VM on no host; a host whose compute service is still
up (a heartbeat within ``[scheduler] service_down_time``:
ComputeServiceInUse, 409 here, 400 at Nova's 2.1 as Nova answers); a target
host that is the VM's own, unknown (404), down or disabled (400); a VM not
in a state evacuate starts from, or with a task in progress (409 naming it).
Accepted, in one transaction: the guarded move to ``rebuilding``, the
migration record ("evacuation", from the dead host, "accepted") and the
action; then a cast to the conductor, which places and rebuilds it
(nova_conductor/tasks/evacuate.py)."""
import datetime
import logging
import secrets

import sqlalchemy as sa

from common import exception, states
from common.db import actions, vm_migrations
from common.db import api as db_api
from common.db import hosts as db_hosts
from common.db.models import Instance, Service, utcnow

LOG = logging.getLogger(__name__)
COMPUTE = "mininova-compute"


class EvacuationService:
    def __init__(self, db, build_client, conf, host="api"):
        """``build_client``: nova_api.build_client.BuildClient."""
        self.db = db
        self.build_client = build_client
        self.conf = conf
        self.host = host

    def evacuate(self, ctxt, ref, host=None, admin_pass=None):
        """{"id", "migration", "admin_pass"} of the accepted evacuation.
        ``admin_pass``: echoed back (a random one when not given): mininova
        sets no password in guests."""
        if not ctxt.is_admin:
            raise exception.Forbidden("Evacuating a VM needs the admin role.")
        allowed, task = states.ACTION_GUARDS["evacuate"]
        with self.db.transaction() as s:
            inst = _find(s, ctxt, ref)
            if inst.host is None:
                raise exception.Conflict(reason="VM %s is on no host (status %s): nothing to "
                                         "evacuate" % (inst.name, states.status(
                                             inst.vm_state, inst.task_state)))
            source = inst.host
            self._check_source_down(s, source)
            if host is not None:
                self._check_target(s, source, host)
            moved = db_api.instance_update_if(
                s, inst.id, {"task_state": task, "fault": None},
                expected_task_state=None, expected_vm_state=tuple(allowed),
                expected_host=source)
            if moved:
                migration = vm_migrations.create(s, inst.id, "evacuation", source,
                                                 dest_host=None, status="accepted",
                                                 request_id=ctxt.request_id)
                actions.action_begin(s, inst.id, ctxt.request_id, "evacuate", inst.project_id,
                                     ctxt.user_id, "accepted", self.host,
                                     "from %s%s" % (source, " to %s" % host if host else ""))
            else:
                s.refresh(inst)
        if not moved:
            why = ("while task %s is in progress" % inst.task_state if inst.task_state
                   else "while it is %s" % states.status(inst.vm_state, inst.task_state))
            raise exception.Conflict(reason="cannot evacuate VM %s %s" % (inst.name, why))
        LOG.info("VM %s: evacuation %s from %s accepted", inst.id, migration, source)
        try:
            self.build_client.evacuate_instance(ctxt, inst.id, migration, host)
        except (exception.ServiceUnavailable, exception.RPCVersionCapError) as e:
            with self.db.transaction() as s:  # undo: nothing will carry it out
                db_api.instance_update_if(s, inst.id, {"task_state": None},
                                          expected_task_state=task)
                vm_migrations.update_if(s, migration, {"status": "error"})
                actions.finish_open_action(s, inst.id, "not sent", self.host, actions.ERROR,
                                           e.message)
            if isinstance(e, exception.RPCVersionCapError):
                raise exception.Conflict(reason="the conductors are not all upgraded to "
                                         "evacuate yet") from e
            raise
        return {"id": inst.id, "migration": migration,
                "admin_pass": admin_pass or secrets.token_urlsafe(9)}

    def _check_source_down(self, s, source):
        svc = s.scalars(sa.select(Service).where(
            Service.host == source, Service.binary == COMPUTE)).first()
        if svc is None:
            return  # no service row: nothing claims the host is up
        age = self._age(svc)
        if age is not None and age <= self._down_after():
            raise exception.ComputeServiceInUse(host=source, age="%.0f s" % age.total_seconds(),
                                                down_after=self.conf.scheduler.service_down_time)

    def _check_target(self, s, source, host):
        if host == source:
            raise exception.Invalid(reason="the target host %s is the VM's own host: an "
                                    "evacuation goes to another host" % host)
        try:
            svc, _ = db_hosts.host_get(s, host)
        except exception.HostNotFound:
            raise exception.HostNotFound(host=str(host)[:255]) from None
        age = self._age(svc)
        if age is None or age > self._down_after():
            raise exception.Invalid(reason="the target host %s is down (no heartbeat within "
                                    "service_down_time %d s)"
                                    % (host, self.conf.scheduler.service_down_time))
        if svc.disabled:
            raise exception.Invalid(reason="the target host %s is disabled%s" % (
                host, ": %s" % svc.disabled_reason if svc.disabled_reason else ""))

    def _down_after(self):
        return datetime.timedelta(seconds=self.conf.scheduler.service_down_time)

    @staticmethod
    def _age(svc):
        return None if svc.last_heartbeat is None else utcnow() - svc.last_heartbeat


def _find(s, ctxt, ref):
    """The VM ``ref`` of the caller's project, or (an admin's) any live VM by id."""
    try:
        return db_api.instance_get_by_ref(s, ctxt.project_id, ref)
    except exception.InstanceNotFound:
        if not db_api.is_uuid(ref):
            raise
        inst = s.scalars(sa.select(Instance).where(Instance.id == str(ref),
                                                   Instance.deleted_at.is_(None))).first()
        if inst is None:
            raise
        return inst
