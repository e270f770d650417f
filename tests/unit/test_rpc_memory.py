"""common.rpc over the in-memory transport: the semantics, without a broker."""
import threading
import time
import uuid

import pytest

from common import context
from common import exception
from common import rpc
from common.rpc import memory_transport


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met within %s s" % timeout)
        time.sleep(0.005)


class Endpoint:
    RPC_METHODS = frozenset({"record", "echo", "missing", "crash", "unserializable", "block"})

    def __init__(self):
        self.casts = []
        self.contexts = []
        self.release = threading.Event()

    def record(self, ctxt, **kwargs):
        self.casts.append(kwargs)

    def echo(self, ctxt, value):
        current = context.get_current()
        self.contexts.append((ctxt.to_dict(), current.request_id if current else None))
        return {"value": value, "request_id": ctxt.request_id}

    def missing(self, ctxt, name):
        raise exception.InstanceNotFound(instance=name)

    def crash(self, ctxt):
        raise ZeroDivisionError("oops")

    def unserializable(self, ctxt):
        return object()

    def block(self, ctxt, tag):
        self.casts.append(tag)
        self.release.wait(10)

    def _secret(self, ctxt):
        return "must never run"


@pytest.fixture
def transport():
    return rpc.get_transport("memory://%s" % uuid.uuid4().hex)


@pytest.fixture
def ctxt():
    return context.RequestContext(project_id="p1", user_id="u1", roles=["member"])


@pytest.fixture
def servers():
    started = []
    yield started
    for server in started:
        server.stop()
    for server in started:
        server.wait(timeout=2)


def serve(servers, transport, target, endpoint=None, workers=4):
    endpoint = endpoint or Endpoint()
    server = rpc.RPCServer(transport, target, [endpoint], workers=workers)
    server.start()
    servers.append(server)
    return endpoint


def test_cast(transport, ctxt, servers):
    endpoint = serve(servers, transport, rpc.Target("conductor"))
    client = rpc.RPCClient(transport, rpc.Target("conductor"))
    assert client.cast(ctxt, "record", a=1, b=[1, "x", None], c={"d": 1.5}) is None
    wait_for(lambda: endpoint.casts)
    assert endpoint.casts == [{"a": 1, "b": [1, "x", None], "c": {"d": 1.5}}]


def test_call_returns_result(transport, ctxt, servers):
    serve(servers, transport, rpc.Target("conductor"))
    client = rpc.RPCClient(transport, rpc.Target("conductor"), timeout=5)
    assert client.call(ctxt, "echo", value=[1, 2]) == {"value": [1, 2],
                                                       "request_id": ctxt.request_id}


def test_call_reraises_typed_mininova_exception(transport, ctxt, servers):
    serve(servers, transport, rpc.Target("conductor"))
    client = rpc.RPCClient(transport, rpc.Target("conductor"), timeout=5)
    with pytest.raises(exception.InstanceNotFound) as info:
        client.call(ctxt, "missing", name="vm-1")
    assert isinstance(info.value, exception.NotFound)
    assert str(info.value) == "VM vm-1 could not be found."
    assert info.value.kwargs == {"instance": "vm-1"}
    assert info.value.code == 404


def test_call_other_exception_is_remote_error(transport, ctxt, servers):
    serve(servers, transport, rpc.Target("conductor"))
    client = rpc.RPCClient(transport, rpc.Target("conductor"), timeout=5)
    with pytest.raises(exception.RemoteError) as info:
        client.call(ctxt, "crash")
    assert info.value.kwargs == {"exc_type": "ZeroDivisionError", "value": "oops"}
    with pytest.raises(exception.RemoteError, match="TypeError"):
        client.call(ctxt, "unserializable")


def test_call_timeout(transport, ctxt):
    client = rpc.RPCClient(transport, rpc.Target("scheduler"), timeout=0.2)
    start = time.monotonic()
    with pytest.raises(exception.MessagingTimeout) as info:
        client.call(ctxt, "select_destinations")
    assert 0.2 <= time.monotonic() - start < 15  # its own timeout, not the default 30 s
    assert info.value.kwargs == {"method": "select_destinations", "topic": "scheduler",
                                 "timeout": 0.2}
    assert isinstance(info.value, exception.ServiceUnavailable)
    # Nothing is lost: the request waits in its queue for a scheduler.
    assert transport.queue_length("scheduler") == 1


def test_unknown_or_private_method_is_dead_lettered(transport, ctxt, servers):
    endpoint = serve(servers, transport, rpc.Target("conductor"))
    client = rpc.RPCClient(transport, rpc.Target("conductor"), timeout=5)
    with pytest.raises(exception.NoSuchMethod,
                       match="no method 'no_such_method' on conductor: not one of its RPC "
                             "entry points"):
        client.call(ctxt, "no_such_method")
    with pytest.raises(exception.NoSuchMethod):
        client.call(ctxt, "_secret")
    client.cast(ctxt, "also_missing")
    wait_for(lambda: len(transport.dead_letters) == 3)
    assert [q for q, _ in transport.dead_letters] == ["conductor"] * 3
    assert '"also_missing"' in transport.dead_letters[2][1]
    # The server keeps serving.
    assert client.call(ctxt, "echo", value=1)["value"] == 1
    assert endpoint.casts == []


def test_malformed_bodies_are_dead_lettered(transport, ctxt, servers):
    serve(servers, transport, rpc.Target("conductor"))
    bad = ["not json {", "[1, 2]", '{"method": "echo", "args": {}, "context": {}}',
           '{"version": "1.0", "method": "echo", "args": [], "context": {}}', b"\xff\xfe"]
    for body in bad:
        transport._put("conductor", memory_transport._Message(body=body, message_id="m"))
    wait_for(lambda: len(transport.dead_letters) == len(bad))
    client = rpc.RPCClient(transport, rpc.Target("conductor"), timeout=5)
    assert client.call(ctxt, "echo", value="still alive")["value"] == "still alive"


def test_context_round_trip(transport, ctxt, servers):
    endpoint = serve(servers, transport, rpc.Target("conductor"))
    client = rpc.RPCClient(transport, rpc.Target("conductor"), timeout=5)
    client.call(ctxt, "echo", value=1)
    (sent, current_request_id), = endpoint.contexts
    assert sent == ctxt.to_dict()
    assert current_request_id == ctxt.request_id


def test_prepare_routes_to_server_queue(transport, ctxt, servers):
    node_a = serve(servers, transport, rpc.Target("compute", server="node-a"))
    node_b = serve(servers, transport, rpc.Target("compute", server="node-b"))
    client = rpc.RPCClient(transport, rpc.Target("compute"), timeout=5)
    prepared = client.prepare(server="node-b", timeout=7)
    assert prepared.target.queue == "compute.node-b" and prepared.timeout == 7
    assert client.target.queue == "compute" and client.timeout == 5  # unchanged
    prepared.cast(ctxt, "record", n=1)
    client.prepare(server="node-a").cast(ctxt, "record", n=2)
    wait_for(lambda: node_a.casts and node_b.casts)
    assert node_b.casts == [{"n": 1}] and node_a.casts == [{"n": 2}]


def test_version_negotiation(transport, ctxt, servers):
    serve(servers, transport, rpc.Target("conductor", version="1.2"))
    client = rpc.RPCClient(transport, rpc.Target("conductor", version="1.0"), timeout=5)
    assert client.call(ctxt, "echo", value=1)["value"] == 1
    assert client.prepare(version="1.2").call(ctxt, "echo", value=2)["value"] == 2
    for version in ("1.3", "2.0", "0.9"):
        with pytest.raises(exception.UnsupportedVersion, match="not supported"):
            client.prepare(version=version).call(ctxt, "echo", value=3)
    assert len(transport.dead_letters) == 3


@pytest.mark.parametrize("bad", [object(), (1, 2), {1: "int key"}, float("nan"), {"s": {1, 2}}])
def test_non_json_args_raise_type_error(transport, ctxt, bad):
    client = rpc.RPCClient(transport, rpc.Target("conductor"))
    with pytest.raises(TypeError):
        client.cast(ctxt, "record", value=bad)
    with pytest.raises(TypeError):
        client.call(ctxt, "record", value=bad)
    assert transport.queue_length("conductor") == 0


def test_ctxt_must_be_a_request_context(transport):
    with pytest.raises(TypeError):
        rpc.RPCClient(transport, rpc.Target("conductor")).cast({"request_id": "x"}, "record")


def test_an_argument_may_be_named_method(transport, ctxt, servers):
    endpoint = serve(servers, transport, rpc.Target("conductor"))
    rpc.RPCClient(transport, rpc.Target("conductor")).cast(ctxt, "record", method="m")
    wait_for(lambda: endpoint.casts)
    assert endpoint.casts == [{"method": "m"}]


def test_handlers_run_concurrently(transport, ctxt, servers):
    barrier = threading.Barrier(4, timeout=5)

    class Parallel:
        RPC_METHODS = {"meet"}

        def meet(self, ctxt):
            barrier.wait()  # only passes when 4 handlers run at once
            return True

    server = rpc.RPCServer(transport, rpc.Target("conductor"), [Parallel()], workers=4)
    server.start()
    servers.append(server)
    client = rpc.RPCClient(transport, rpc.Target("conductor"), timeout=5)
    results = []
    threads = [threading.Thread(target=lambda: results.append(client.call(ctxt, "meet")))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [True] * 4


def test_unacked_message_is_redelivered_after_server_stops(transport, ctxt, servers):
    first = Endpoint()
    server = rpc.RPCServer(transport, rpc.Target("compute", server="n1"), [first], workers=2)
    server.start()
    rpc.RPCClient(transport, rpc.Target("compute", server="n1")).cast(ctxt, "block", tag="t1")
    wait_for(lambda: first.casts == ["t1"])
    server.stop()
    server.wait(timeout=0.1)  # handler still blocked: its message was never acked
    assert transport.queue_length("compute.n1") == 1
    second = serve(servers, transport, rpc.Target("compute", server="n1"))
    second.release.set()
    wait_for(lambda: second.casts == ["t1"])
    first.release.set()


def test_cast_before_server_starts_is_delivered(transport, ctxt, servers):
    rpc.RPCClient(transport, rpc.Target("conductor")).cast(ctxt, "record", early=True)
    endpoint = serve(servers, transport, rpc.Target("conductor"))
    wait_for(lambda: endpoint.casts)
    assert endpoint.casts == [{"early": True}]


def test_get_transport_and_target():
    assert rpc.get_transport("memory://x") is rpc.get_transport("memory://x")
    assert rpc.get_transport("memory://x") is not rpc.get_transport("memory://y")
    with pytest.raises(ValueError):
        rpc.get_transport("kafka://user:secret@host/")
    assert rpc.Target("scheduler").queue == "scheduler"
    assert rpc.Target("compute", server="h1").queue == "compute.h1"
    for bad in ({"topic": ""}, {"topic": "x", "version": "1"}, {"topic": "x", "server": ""}):
        with pytest.raises(ValueError):
            rpc.Target(**bad)
