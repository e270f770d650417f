"""Client of the scheduler daemon: placement requests on the ``scheduler`` topic."""
from common import rpc

TOPIC = "scheduler"
# 1.1: optional ``action_id`` (the create's action row) on schedule_instance.
VERSION = "1.1"
_BASE_VERSION = "1.0"


class SchedulerAPI:
    def __init__(self, transport, timeout=30):
        self.client = rpc.RPCClient(
            transport, rpc.Target(TOPIC, version=_BASE_VERSION), timeout=timeout)
        self._client_1_1 = self.client.prepare(version="1.1")

    def schedule_instance(self, ctxt, instance_id, action_id=None):
        """``action_id``: the id of the create's action, if the caller has it."""
        if action_id is None:
            self.client.cast(ctxt, "schedule_instance", instance_id=instance_id)
        else:
            self._client_1_1.cast(ctxt, "schedule_instance", instance_id=instance_id,
                                  action_id=action_id)
