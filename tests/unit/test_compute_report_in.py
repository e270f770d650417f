"""A compute host reporting in at start-up, and handing back the builds its
restart interrupted, over RPC (in-memory transport) to the real conductor."""
import threading
import uuid

import pytest

from common import context, rpc
from common.db import api as db_api
from nova_compute.manager import ComputeManager
from nova_compute.virt import fake_libvirt
from nova_conductor import rpcapi
from nova_conductor.manager import ConductorManager

CTXT = context.RequestContext(project_id="p")


@pytest.fixture
def transport():
    return rpc.get_transport("memory://%s" % uuid.uuid4().hex)


@pytest.fixture
def serve(transport):
    started = []

    def start(endpoint, version=rpcapi.VERSION):
        server = rpc.RPCServer(transport, rpc.Target(rpcapi.TOPIC, version=version),
                               [endpoint], workers=2)
        server.start()
        started.append(server)
    yield start
    for server in started:
        server.stop()
        server.wait(timeout=5)


class HeldConductor(ConductorManager):
    """Stores a heartbeat only once the test releases it."""

    def __init__(self, db):
        super().__init__(db)
        self.entered, self.release = threading.Event(), threading.Event()

    def service_heartbeat(self, ctxt, host, binary, resources=None):
        self.entered.set()
        assert self.release.wait(10)
        super().service_heartbeat(ctxt, host, binary, resources)


def test_report_in_returns_once_the_heartbeat_is_stored(conf, db, transport, serve):
    conductor = HeldConductor(db)
    serve(conductor)
    conf.set_override("compute_driver", "fake-libvirt", group="compute")
    driver = fake_libvirt.FakeLibvirtDriver(conf)
    driver.init_host(conf.host)
    try:
        manager = ComputeManager(driver, rpcapi.ConductorRPCAPI(transport, timeout=10), None, conf)
        returned = threading.Event()
        reporter = threading.Thread(target=lambda: (manager.report_in(CTXT), returned.set()))
        reporter.start()
        assert conductor.entered.wait(10)
        assert not returned.is_set()  # a call: it waits for the conductor
        conductor.release.set()
        assert returned.wait(10)
        reporter.join(10)
        with db.transaction() as s:
            assert [(x.host, x.binary) for x in db_api.service_list(s)] == [
                (conf.host, "mininova-compute")]
    finally:
        conductor.release.set()
        driver.cleanup_host()


class OldConductor:
    """A conductor of message version 1.1 (no instance_build_interrupted)."""

    RPC_METHODS = frozenset({"instance_build_failed"})

    def __init__(self):
        self.failed = []

    def instance_build_failed(self, ctxt, instance_id, host, reason, events=(), action_id=None):
        self.failed.append((instance_id, host, reason))
        return True


def test_an_older_conductor_is_told_of_an_interrupted_build_as_a_failed_one(transport, serve):
    """With [upgrade_levels] conductor = 1.1 (the version of the oldest conductor)."""
    old = OldConductor()
    serve(old, version="1.1")
    rpcapi.ConductorRPCAPI(transport, timeout=10, version_cap="1.1").instance_build_interrupted(
        CTXT, "vm-1", "h1", "interrupted by a restart")
    assert old.failed == [("vm-1", "h1", "interrupted by a restart")]
