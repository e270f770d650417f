"""RPC versions with caps (as oslo.messaging): a client capped by
[upgrade_levels] sends the older form of a message, servers take the same
major version with a minor up to their own, and refuse anything newer."""
import json
import logging
import threading
import uuid

import pytest

from common import context, exception, rpc, states
from common.db import actions
from common.db import api as db_api
from mininova_lab.waiting import wait_for
from nova_compute import rpcapi as compute_rpcapi
from nova_conductor import rpcapi as conductor_rpcapi
from nova_conductor.manager import ConductorManager
from nova_scheduler import rpcapi as scheduler_rpcapi

CTXT = context.RequestContext(project_id="p")


class Recording:
    """A transport that records each message sent: (queue, body as a dict)."""

    def __init__(self, transport):
        self.transport = transport
        self.sent = []

    def send(self, target, body, **kwargs):
        self.sent.append((target.queue, json.loads(body)))
        return self.transport.send(target, body, **kwargs)

    def last(self):
        queue, body = self.sent[-1]
        return queue, body["version"], body["method"], body["args"]


class Endpoint:
    """Records what it handled; each subclass has one release's signatures."""

    def __init__(self):
        self.got = []
        self.lock = threading.Lock()

    def _got(self, method, **kwargs):
        with self.lock:
            self.got.append((method, kwargs))
        return True


class Scheduler10(Endpoint):
    RPC_METHODS = frozenset({"schedule_instance"})

    def schedule_instance(self, ctxt, instance_id):
        return self._got("schedule_instance", instance_id=instance_id)


class Compute10(Endpoint):
    RPC_METHODS = frozenset({"build_instance", "terminate_instance"})

    def build_instance(self, ctxt, instance, image):
        return self._got("build_instance", instance=instance, image=image)

    def terminate_instance(self, ctxt, instance_id):
        return self._got("terminate_instance", instance_id=instance_id)


class Conductor10(Endpoint):
    RPC_METHODS = frozenset({"instance_spawned", "instance_build_failed",
                             "instance_terminated"})

    def instance_spawned(self, ctxt, instance_id, host, power_state, events=()):
        return self._got("instance_spawned", instance_id=instance_id)

    def instance_build_failed(self, ctxt, instance_id, host, reason, events=()):
        return self._got("instance_build_failed", instance_id=instance_id, reason=reason)

    def instance_terminated(self, ctxt, instance_id, host):
        return self._got("instance_terminated", instance_id=instance_id)


class Conductor11(Conductor10):
    def instance_spawned(self, ctxt, instance_id, host, power_state, events=(),
                         action_id=None):
        return self._got("instance_spawned", instance_id=instance_id, action_id=action_id)

    def instance_build_failed(self, ctxt, instance_id, host, reason, events=(),
                              action_id=None):
        return self._got("instance_build_failed", instance_id=instance_id, reason=reason,
                         action_id=action_id)


@pytest.fixture
def transport():
    return rpc.get_transport("memory://%s" % uuid.uuid4().hex)


@pytest.fixture
def serve(transport):
    started = []

    def start(endpoint, topic, version, server=None):
        srv = rpc.RPCServer(transport, rpc.Target(topic, server=server, version=version),
                            [endpoint], workers=2)
        srv.start()
        started.append(srv)
        return endpoint
    yield start
    for srv in started:
        srv.stop()
    for srv in started:
        srv.wait(timeout=5)


def test_can_send_version_follows_the_cap(transport):
    capped = rpc.RPCClient(transport, rpc.Target("conductor"), version_cap="1.1")
    assert capped.can_send_version("1.0") and capped.can_send_version("1.1")
    assert not capped.can_send_version("1.2") and not capped.can_send_version("2.0")
    assert capped.prepare(server="h1", version="1.0").version_cap == "1.1"
    for uncapped in (None, ""):
        client = rpc.RPCClient(transport, rpc.Target("conductor"), version_cap=uncapped)
        assert client.version_cap is None and client.can_send_version("9.9")
    with pytest.raises(ValueError):
        rpc.RPCClient(transport, rpc.Target("conductor"), version_cap="1")


def test_a_message_above_the_cap_is_never_sent(transport):
    client = rpc.RPCClient(transport, rpc.Target("conductor"), version_cap="1.0")
    with pytest.raises(exception.RPCVersionCapError, match="1.1 is above the version cap 1.0"):
        client.prepare(version="1.1").cast(CTXT, "instance_spawned")
    with pytest.raises(exception.RPCVersionCapError):
        client.prepare(version="1.1").call(CTXT, "instance_spawned")
    assert transport.queue_length("conductor") == 0


def test_upgrade_levels_take_a_version_or_nothing(conf):
    assert [conf.upgrade_levels[s] for s in ("scheduler", "conductor", "compute")] == [""] * 3
    conf.set_override("compute", "1.0", group="upgrade_levels")
    assert conf.upgrade_levels.compute == "1.0"
    with pytest.raises(ValueError):
        conf.set_override("compute", "latest", group="upgrade_levels")


def test_clients_capped_at_1_0_send_1_0_messages_that_1_0_servers_take(transport, serve):
    sent = Recording(transport)
    scheduler = serve(Scheduler10(), "scheduler", "1.0")
    compute = serve(Compute10(), "compute", "1.0", server="h1")
    conductor = serve(Conductor10(), "conductor", "1.0")

    scheduler_rpcapi.SchedulerRPCAPI(sent, version_cap="1.0").schedule_instance(
        CTXT, "vm-1", action_id=7)
    assert sent.last() == ("scheduler", "1.0", "schedule_instance", {"instance_id": "vm-1"})
    compute_rpcapi.ComputeRPCAPI(sent, version_cap="1.0").build_instance(
        CTXT, "h1", {"id": "vm-1"}, {"id": "img"}, action_id=7)
    assert sent.last() == ("compute.h1", "1.0", "build_instance",
                           {"instance": {"id": "vm-1"}, "image": {"id": "img"}})
    api = conductor_rpcapi.ConductorRPCAPI(sent, timeout=10, version_cap="1.0")
    assert api.instance_spawned(CTXT, "vm-1", "h1", "running", action_id=7) is True
    assert sent.last()[:2] == ("conductor", "1.0") and "action_id" not in sent.last()[3]
    api.instance_build_failed(CTXT, "vm-2", "h1", "boom", action_id=7)
    assert sent.last()[:2] == ("conductor", "1.0") and "action_id" not in sent.last()[3]
    # instance_build_interrupted came with 1.2: below, a failed build.
    api.instance_build_interrupted(CTXT, "vm-3", "h1", "restarted")
    assert sent.last()[1:3] == ("1.0", "instance_build_failed")

    wait_for(lambda: scheduler.got and compute.got, 10, what="the casts handled")
    assert scheduler.got == [("schedule_instance", {"instance_id": "vm-1"})]
    assert compute.got == [("build_instance", {"instance": {"id": "vm-1"},
                                               "image": {"id": "img"}})]
    assert conductor.got == [
        ("instance_spawned", {"instance_id": "vm-1"}),
        ("instance_build_failed", {"instance_id": "vm-2", "reason": "boom"}),
        ("instance_build_failed", {"instance_id": "vm-3", "reason": "restarted"})]


def test_a_client_capped_at_1_1_tells_a_1_1_conductor_of_an_interrupted_build(transport,
                                                                               serve):
    conductor = serve(Conductor11(), "conductor", "1.1")
    api = conductor_rpcapi.ConductorRPCAPI(transport, timeout=10, version_cap="1.1")
    api.instance_build_interrupted(CTXT, "vm-1", "h1", "restarted")
    assert conductor.got == [("instance_build_failed", {
        "instance_id": "vm-1", "reason": "restarted", "action_id": None})]


def test_uncapped_clients_send_the_newest_forms(transport, serve):
    sent = Recording(transport)
    serve(Conductor11(), "conductor", conductor_rpcapi.VERSION)
    scheduler_rpcapi.SchedulerRPCAPI(sent).schedule_instance(CTXT, "vm-1", action_id=7)
    assert sent.last() == ("scheduler", "1.1", "schedule_instance",
                           {"instance_id": "vm-1", "action_id": 7})
    compute_rpcapi.ComputeRPCAPI(sent).build_instance(CTXT, "h1", {"id": "vm-1"}, {}, action_id=7)
    assert sent.last()[:2] == ("compute.h1", "1.1") and sent.last()[3]["action_id"] == 7
    compute_rpcapi.ComputeRPCAPI(sent).terminate_instance(CTXT, "h1", "vm-1")
    assert sent.last()[:2] == ("compute.h1", "1.0")  # unchanged since 1.0
    api = conductor_rpcapi.ConductorRPCAPI(sent, timeout=10)
    api.instance_spawned(CTXT, "vm-1", "h1", "running", action_id=7)
    assert sent.last()[:2] == ("conductor", "1.1") and sent.last()[3]["action_id"] == 7


def test_an_uncapped_client_against_an_older_server(transport, serve, caplog):
    """What has not changed since the server's version goes through; a newer
    form is refused with the reason, to the caller or in the log, and
    dead-lettered: the operator sets [upgrade_levels] during such an upgrade."""
    compute = serve(Compute10(), "compute", "1.0", server="h1")
    conductor = serve(Conductor10(), "conductor", "1.0")
    api = conductor_rpcapi.ConductorRPCAPI(transport, timeout=10)
    api.instance_terminated(CTXT, "vm-1", "h1")
    assert conductor.got == [("instance_terminated", {"instance_id": "vm-1"})]
    with pytest.raises(exception.UnsupportedVersion) as info:
        api.instance_spawned(CTXT, "vm-1", "h1", "running", action_id=7)
    assert str(info.value).startswith(
        "Message version 1.1 of instance_spawned not supported by conductor at version 1.0")

    caplog.set_level(logging.ERROR, logger="common.rpc.server")
    client = compute_rpcapi.ComputeRPCAPI(transport)
    client.build_instance(CTXT, "h1", {"id": "vm-2"}, {}, action_id=7)
    client.terminate_instance(CTXT, "h1", "vm-2")
    wait_for(lambda: compute.got and len(transport.dead_letters) == 2, 10,
             what="the build dead-lettered, the delete handled")
    assert compute.got == [("terminate_instance", {"instance_id": "vm-2"})]
    assert [q for q, _ in transport.dead_letters] == ["conductor", "compute.h1"]
    assert ("UnsupportedVersion: Message version 1.1 of build_instance not supported by "
            "compute.h1 at version 1.0") in caplog.text


@pytest.mark.parametrize("version", ["1.3", "2.0", "0.9"])
def test_a_newer_minor_or_another_major_is_refused(transport, serve, version, caplog):
    conductor = serve(Conductor11(), "conductor", "1.2")
    client = rpc.RPCClient(transport, rpc.Target("conductor", version=version), timeout=10)
    with pytest.raises(exception.UnsupportedVersion,
                       match="version %s of instance_terminated not supported by conductor "
                             "at version 1.2" % version):
        client.call(CTXT, "instance_terminated", instance_id="vm-1", host="h1")
    caplog.set_level(logging.ERROR, logger="common.rpc.server")
    client.cast(CTXT, "instance_terminated", instance_id="vm-1", host="h1")
    wait_for(lambda: len(transport.dead_letters) == 2, 10, what="both dead-lettered")
    assert "UnsupportedVersion: Message version %s" % version in caplog.text
    assert conductor.got == []


def _spawning_vm(db, host):
    with db.transaction() as s:
        image = db_api.image_create(s, name="img", size=1, checksum="0" * 64, min_ram=0,
                                    min_disk=0, location="/nowhere", disk_format="qcow2",
                                    status="active")
        inst = db_api.instance_create(s, name="vm", project_id="p", image_id=image.id,
                                      flavor_id="1", vcpus=1, memory_mb=128, root_gb=1,
                                      host=host, vm_state=states.BUILDING,
                                      task_state=states.SPAWNING)
        action_id = actions.action_start(s, inst.id, CTXT.request_id, "create", "p").id
    return inst.id, action_id


@pytest.mark.parametrize("cap", ["1.0", None])
def test_the_conductor_records_a_build_report_of_either_version(db, transport, serve, cap):
    """1.1 carries the create's action id; 1.0 does not, and the conductor
    finds the action by the request id: the same timeline either way."""
    serve(ConductorManager(db), "conductor", conductor_rpcapi.VERSION)
    vm, action_id = _spawning_vm(db, "h1")
    step = {"event": "domain started", "host": "h1", "start_time": "2030-01-01T00:00:00Z",
            "finish_time": "2030-01-01T00:00:01Z", "result": "success", "details": None}
    api = conductor_rpcapi.ConductorRPCAPI(transport, timeout=10, version_cap=cap)
    assert api.instance_spawned(CTXT, vm, "h1", "running", [step], action_id=action_id)
    with db.transaction() as s:
        action, events = actions.action_get(s, vm, CTXT.request_id)
        assert (action.id, action.action, action.result) == (action_id, "create", "success")
        assert sorted(e.event for e in events) == ["domain started", "reported"]
        assert len(actions.action_list(s, vm)) == 1
        assert db_api.instance_get(s, vm).vm_state == states.ACTIVE


class Compute17(Endpoint):
    """A compute of 1.1 to 1.7: build_instance without ``placed``."""
    RPC_METHODS = frozenset({"build_instance"})

    def build_instance(self, ctxt, instance, image, action_id=None):
        return self._got("build_instance", instance=instance, action_id=action_id)


class Compute18(Endpoint):
    """A 1.8 compute: records ``placed`` and whether it ran on a first delivery."""
    RPC_METHODS = frozenset({"build_instance"})

    def build_instance(self, ctxt, instance, image, action_id=None, placed=False):
        return self._got("build_instance", instance=instance, placed=placed,
                         first=rpc.server.first_delivery())


PLACED = {"id": "vm-1", "host": "h1", "metadata": {"a": "b"}, "key_name": None,
          "key_data": None, "user_data": None}


def test_a_placed_build_is_sent_as_1_8_or_below_a_cap_without_its_guest_fields(transport,
                                                                             serve):
    sent = Recording(transport)
    new = serve(Compute18(), "compute", compute_rpcapi.VERSION, server="h1")
    old = serve(Compute17(), "compute", "1.7", server="h2")
    compute_rpcapi.ComputeRPCAPI(sent).build_instance(CTXT, "h1", PLACED, {}, action_id=7)
    assert sent.last()[:2] == ("compute.h1", "1.8") and sent.last()[3]["placed"] is True
    compute_rpcapi.ComputeRPCAPI(sent, version_cap="1.7").build_instance(
        CTXT, "h2", PLACED, {}, action_id=7)
    assert sent.last() == ("compute.h2", "1.1", "build_instance",
                           {"instance": {"id": "vm-1", "host": "h1"}, "image": {},
                            "action_id": 7})
    # Not placed just now (no guest fields): the 1.1 form, uncapped too.
    compute_rpcapi.ComputeRPCAPI(sent).build_instance(CTXT, "h1", {"id": "vm-2"}, {})
    assert sent.last()[:2] == ("compute.h1", "1.1") and "placed" not in sent.last()[3]
    wait_for(lambda: len(new.got) == 2 and old.got, 10, what="the builds handled")
    assert sorted(new.got, key=lambda g: g[1]["instance"]["id"]) == [
        ("build_instance", {"instance": PLACED, "placed": True, "first": True}),
        ("build_instance", {"instance": {"id": "vm-2"}, "placed": False, "first": True})]
    assert old.got == [("build_instance", {"instance": {"id": "vm-1", "host": "h1"},
                                           "action_id": 7})]
