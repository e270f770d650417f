"""Client of the scheduler daemon: placement requests on the ``scheduler`` topic.

Version history (a server at X.Y takes X.0 to X.Y; a client capped by
``[upgrade_levels] scheduler`` sends the older form of a message):

* 1.0 - schedule_instance
* 1.1 - schedule_instance takes ``action_id`` (the create's action row)
"""
from common import rpc

TOPIC = "scheduler"
VERSION = "1.1"


class SchedulerRPCAPI:
    def __init__(self, transport, timeout=30, version_cap=None):
        """``version_cap``: the newest version all schedulers take (None: no cap)."""
        self.client = rpc.RPCClient(transport, rpc.Target(TOPIC), timeout=timeout,
                                    version_cap=version_cap)

    def schedule_instance(self, ctxt, instance_id, action_id=None):
        """``action_id``: the id of the create's action, if the caller has it."""
        kwargs, version = {"instance_id": instance_id}, "1.0"
        if self.client.can_send_version("1.1"):
            kwargs["action_id"], version = action_id, "1.1"
        self.client.prepare(version=version).cast(ctxt, "schedule_instance", **kwargs)
