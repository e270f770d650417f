"""mininova's RPC layer, a small oslo.messaging over RabbitMQ (kombu).

    transport = rpc.get_transport(CONF.transport_url)       # one per process
    client = rpc.RPCClient(transport, rpc.Target("compute"),
                           version_cap=CONF.upgrade_levels.compute)
    version = "1.1" if client.can_send_version("1.1") else "1.0"
    client.prepare(server=host, version=version).cast(ctxt, "build_instance", ...)

    server = rpc.RPCServer(transport, rpc.Target("compute", server=host, version="1.1"),
                           [ComputeManager()], workers=CONF.rpc_workers)
    server.start(); ...; server.stop(); server.wait()

Messages are readable JSON (see ``protocol``); delivery is at-least-once
(acked after the handler ran), so handlers must be idempotent. A server takes
messages of its major version up to its minor, and calls only the methods its
endpoints declare in ``RPC_METHODS``. Each service's ``rpcapi.py`` wraps a
client: its version history, one method per remote call.
"""
from common.rpc.client import RPCClient
from common.rpc.server import RPCServer
from common.rpc.target import Target
from common.rpc.transport import Transport, get_transport

__all__ = ["RPCClient", "RPCServer", "Target", "Transport", "get_transport"]
