"""Clients of the scheduler daemon's two RPC topics.

``scheduler``: placement requests from the API.
``conductor``: state reports from compute hosts; like Nova's conductor it keeps
DB credentials off the hypervisor hosts."""
from common import rpc

SCHEDULER_TOPIC = "scheduler"
CONDUCTOR_TOPIC = "conductor"
VERSION = "1.0"


class SchedulerAPI:
    def __init__(self, transport, timeout=30):
        self.client = rpc.RPCClient(transport, rpc.Target(SCHEDULER_TOPIC, version=VERSION),
                                    timeout=timeout)

    def schedule_instance(self, ctxt, instance_id):
        self.client.cast(ctxt, "schedule_instance", instance_id=instance_id)


class ConductorAPI:
    def __init__(self, transport, timeout=30):
        self.client = rpc.RPCClient(transport, rpc.Target(CONDUCTOR_TOPIC, version=VERSION),
                                    timeout=timeout)

    def service_heartbeat(self, ctxt, host, binary, resources):
        self.client.cast(ctxt, "service_heartbeat", host=host, binary=binary,
                         resources=resources)

    def instance_get(self, ctxt, instance_id):
        """The live VM as a dict, or None when it is gone."""
        return self.client.call(ctxt, "instance_get", instance_id=instance_id)

    def instance_spawned(self, ctxt, instance_id, host, power_state):
        self.client.call(ctxt, "instance_spawned", instance_id=instance_id, host=host,
                         power_state=power_state)

    def instance_build_failed(self, ctxt, instance_id, host, reason):
        self.client.call(ctxt, "instance_build_failed", instance_id=instance_id, host=host,
                         reason=reason)

    def instance_terminated(self, ctxt, instance_id, host):
        self.client.call(ctxt, "instance_terminated", instance_id=instance_id, host=host)
