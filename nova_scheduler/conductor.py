"""Conductor endpoint: compute hosts report state here and it writes the DB.

Every report is a conditional update, so a late or repeated report (RPC is
at-least-once) cannot undo a newer state: e.g. "spawned" after the user asked
for a delete leaves the VM DELETING."""
import logging

from common import exception, payloads, states
from common.db import api as db_api
from common.db.models import utcnow

LOG = logging.getLogger(__name__)



class ConductorManager:
    def __init__(self, db):
        self.db = db

    def service_heartbeat(self, ctxt, host, binary, resources=None):
        with self.db.transaction() as s:
            db_api.service_heartbeat(s, host, binary, resources)

    def instance_get(self, ctxt, instance_id):
        with self.db.transaction() as s:
            try:
                inst = db_api.instance_get(s, instance_id)
            except exception.InstanceNotFound:
                return None
            return payloads.instance(inst)

    def instance_spawned(self, ctxt, instance_id, host, power_state):
        with self.db.transaction() as s:
            done = db_api.instance_update_if(
                s, instance_id,
                {"vm_state": states.ACTIVE, "task_state": None, "power_state": power_state,
                 "launched_at": utcnow(), "fault": None},
                expected_task_state=states.SPAWNING, expected_host=host)
        LOG.info("VM %s ACTIVE on %s%s", instance_id, host, "" if done else " (ignored: state moved on)")
        return done

    def instance_build_failed(self, ctxt, instance_id, host, reason):
        with self.db.transaction() as s:
            done = db_api.instance_update_if(
                s, instance_id,
                {"vm_state": states.ERROR, "task_state": None, "power_state": states.NOSTATE,
                 "fault": reason},
                expected_task_state=states.SPAWNING, expected_host=host)
            if done:
                db_api.claim_release(s, instance_id)
        LOG.warning("VM %s build failed on %s: %s", instance_id, host, reason)
        return done

    def instance_terminated(self, ctxt, instance_id, host):
        with self.db.transaction() as s:
            done = db_api.instance_soft_delete(s, instance_id, expected_host=host)
        LOG.info("VM %s deleted from %s", instance_id, host)
        return done
