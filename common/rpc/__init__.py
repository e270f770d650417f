"""mininova's RPC layer, a small oslo.messaging over RabbitMQ (kombu).

    transport = rpc.get_transport(CONF.transport_url)       # one per process
    client = rpc.RPCClient(transport, rpc.Target("compute"))
    client.prepare(server=host).cast(ctxt, "build_instance", instance_uuid=uuid)

    server = rpc.RPCServer(transport, rpc.Target("compute", server=host),
                           [ComputeManager()], workers=CONF.rpc_workers)
    server.start(); ...; server.stop(); server.wait()

Messages are readable JSON (see ``protocol``); delivery is at-least-once
(acked after the handler ran), so handlers must be idempotent.
"""
from common.rpc.client import RPCClient
from common.rpc.server import RPCServer
from common.rpc.target import Target
from common.rpc.transport import Transport, get_transport

__all__ = ["RPCClient", "RPCServer", "Target", "Transport", "get_transport"]
