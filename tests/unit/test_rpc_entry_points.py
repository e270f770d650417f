"""Only declared entry points are callable remotely, in every service: each
manager's RPC_METHODS, which is what its rpcapi client sends."""
import inspect
import json
import uuid

import pytest

from common import context, exception, rpc
from common.rpc import protocol
from mininova_lab.waiting import wait_for
from nova_compute import rpcapi as compute_rpcapi
from nova_compute.manager import ComputeManager
from nova_conductor import rpcapi as conductor_rpcapi
from nova_conductor.manager import ConductorManager
from nova_scheduler import rpcapi as scheduler_rpcapi
from nova_scheduler.manager import SchedulerManager
from tests.unit.test_compute_manager import make_manager

CTXT = context.RequestContext(project_id="p")


@pytest.fixture
def transport():
    return rpc.get_transport("memory://%s" % uuid.uuid4().hex)


class Sink:
    """A transport that keeps the method names sent and answers calls with None."""

    def __init__(self):
        self.methods = set()

    def send(self, target, body, wait_for_reply=False, timeout=None):
        self.methods.add(json.loads(body)["method"])
        return protocol.encode_result(None) if wait_for_reply else None


def _sent_by(api_class):
    """Every method name a client sends, capped at 1.0 or not."""
    sink = Sink()
    for cap in (None, "1.0"):
        api = api_class(sink, version_cap=cap)
        for name, method in inspect.getmembers(api, inspect.ismethod):
            if name.startswith("_"):
                continue
            params = list(inspect.signature(method).parameters.values())[1:]  # ctxt
            try:
                method(CTXT, *["x" for p in params if p.default is p.empty])
            except (exception.RPCVersionCapError, exception.ServiceUnavailable):
                assert cap is not None  # a message newer than the cap: not sent
    assert sink.methods
    return sink.methods


@pytest.mark.parametrize("api_class, manager_class", [
    (scheduler_rpcapi.SchedulerRPCAPI, SchedulerManager),
    (conductor_rpcapi.ConductorRPCAPI, ConductorManager),
    (compute_rpcapi.ComputeRPCAPI, ComputeManager),
])
def test_each_manager_declares_what_its_client_sends(api_class, manager_class):
    assert _sent_by(api_class) == manager_class.RPC_METHODS


def _managers(conf, db, recorder):
    compute = make_manager(conf, db)
    compute.conductor = recorder()
    return {"scheduler": SchedulerManager(db, recorder(), conf),
            "conductor": ConductorManager(db),
            "compute": compute}


@pytest.mark.parametrize("topic", ["scheduler", "conductor", "compute"])
def test_an_undeclared_public_method_of_each_manager_is_refused(conf, db, recorder,
                                                                transport, topic):
    manager = _managers(conf, db, recorder)[topic]
    ran = []
    # A public helper added later is no remote call either.
    manager.helper = lambda ctxt, **kwargs: ran.append(kwargs)
    undeclared = sorted(n for n in dir(manager) if not n.startswith("_")
                        and callable(getattr(manager, n)) and n not in manager.RPC_METHODS)
    assert "helper" in undeclared
    if topic == "compute":  # its periodic and start-up tasks
        assert {"heartbeat", "init_host", "reconcile"} <= set(undeclared)
    server = rpc.RPCServer(transport, rpc.Target(topic, version="1.2"), [manager], workers=1)
    server.start()
    try:
        client = rpc.RPCClient(transport, rpc.Target(topic), timeout=10)
        for name in undeclared:
            with pytest.raises(exception.NoSuchMethod, match="not one of its RPC entry points"):
                client.call(CTXT, name)
        client.cast(CTXT, "helper", x=1)
        wait_for(lambda: len(transport.dead_letters) == len(undeclared) + 1, 10,
                 what="the cast dead-lettered")
    finally:
        server.stop()
        server.wait(timeout=5)
        if topic == "compute":
            manager.driver.cleanup_host()
    assert ran == []
    if topic == "compute":
        assert manager.conductor.calls == []  # no heartbeat was sent


class Declared:
    RPC_METHODS = frozenset({"ping"})

    def ping(self, ctxt):
        return "declared"

    def helper(self, ctxt):
        return "never remote"


class Other:
    RPC_METHODS = frozenset({"ping", "pong"})

    def ping(self, ctxt):
        return "second"

    def pong(self, ctxt):
        return "pong"


def test_a_method_goes_to_the_first_endpoint_declaring_it(transport):
    server = rpc.RPCServer(transport, rpc.Target("t"), [Declared(), Other()], workers=1)
    server.start()
    try:
        client = rpc.RPCClient(transport, rpc.Target("t"), timeout=10)
        assert client.call(CTXT, "ping") == "declared"
        assert client.call(CTXT, "pong") == "pong"
        with pytest.raises(exception.NoSuchMethod, match="no method 'helper' on t"):
            client.call(CTXT, "helper")
    finally:
        server.stop()
        server.wait(timeout=5)


@pytest.mark.parametrize("declared, error", [
    (None, "must declare RPC_METHODS"),
    (["ping"], "must declare RPC_METHODS"),  # a set, not a list
    ({"ping", "missing"}, "names 'missing', which is not a public method"),
    ({"_private"}, "names '_private'"),
])
def test_an_endpoint_must_declare_its_entry_points(transport, declared, error):
    class Endpoint:
        def ping(self, ctxt):
            pass

        def _private(self, ctxt):
            pass
    if declared is not None:
        Endpoint.RPC_METHODS = declared
    with pytest.raises(TypeError, match=error):
        rpc.RPCServer(transport, rpc.Target("t"), [Endpoint()])
