"""Client of the compute daemons: one queue per host, ``compute.<host>``."""
from common import rpc

TOPIC = "compute"
VERSION = "1.0"


class ComputeAPI:
    def __init__(self, transport, timeout=30):
        self.client = rpc.RPCClient(transport, rpc.Target(TOPIC, version=VERSION),
                                    timeout=timeout)

    def build_instance(self, ctxt, host, instance, image):
        self.client.prepare(server=host).cast(ctxt, "build_instance", instance=instance,
                                              image=image)

    def terminate_instance(self, ctxt, host, instance_id):
        self.client.prepare(server=host).cast(ctxt, "terminate_instance",
                                              instance_id=instance_id)
