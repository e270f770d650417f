"""The build of a VM, as Nova's ComputeTaskManager.build_instances runs it.

The API stores the VM in 'scheduling' and casts ``build_instances`` here; a
failed build comes back here too (``ConductorManager._build_failed``). The
task asks the scheduler for a host (``select_destinations``: filter, weigh,
claim atomically; it reads the VM and its image once and answers them with
the host), then casts ``build_instance`` to that host's compute, with the
create's action id, which comes back with the build's report.

What the scheduler refuses ends the create here: the VM goes to ERROR with
the scheduler's explanation as its fault. A scheduler (or database) that is
away raises ServiceUnavailable: the RPC server puts the build_instances cast
back for later, and the VM stays in 'scheduling' meanwhile (the watchdog
sends the build again should the cast be lost).
"""
import logging

from common import exception, states
from common.db import api as db_api

LOG = logging.getLogger(__name__)


class BuildTask:
    def __init__(self, db, scheduler_rpcapi, compute_rpcapi, timeline):
        self.db = db
        self.scheduler_rpcapi = scheduler_rpcapi
        self.compute_rpcapi = compute_rpcapi
        self.timeline = timeline

    def build_instances(self, ctxt, instance_id, action_id=None):
        """Place the VM and cast its build; the host, or None (nothing
        built: the VM is gone, no longer scheduling, or now in ERROR)."""
        try:
            selection = self.scheduler_rpcapi.select_destinations(ctxt, instance_id,
                                                                  action_id=action_id)
        except exception.InstanceNotFound:
            LOG.info("VM %s is gone; nothing to build", instance_id)
            self.timeline.finish(ctxt, instance_id, "error",
                                 "VM was deleted before it was scheduled")
            return None
        except exception.ImageNotFound as e:
            return self._fail(ctxt, instance_id, "image unavailable", e.message)
        except exception.NoValidHost as e:
            return self._fail(ctxt, instance_id, "no valid host", e.message)
        if selection is None:
            return None
        self.compute_rpcapi.build_instance(ctxt, selection["host"], selection["instance"],
                                           selection["image"], action_id=selection["action_id"])
        return selection["host"]

    def _fail(self, ctxt, instance_id, event, fault):
        with self.db.transaction() as s:
            db_api.instance_update_if(
                s, instance_id, {"vm_state": states.ERROR, "task_state": None, "fault": fault},
                expected_task_state=states.SCHEDULING)
        self.timeline.record(ctxt, instance_id, event, result="error", details=fault)
        self.timeline.finish(ctxt, instance_id, "error", fault)
        return None
