"""common.rpc.policy and the RPC server's refusal of senders' messages."""
import json

import pytest

from common import context
from common import exception
from common.rpc import accounts
from common.rpc import memory_transport
from common.rpc import policy
from common.rpc import protocol
from common.rpc import server as rpc_server
from common.rpc import target as rpc_target
from common.rpc import transport as base
from nova_compute.manager import ComputeManager
from nova_conductor.manager import ConductorManager
from nova_scheduler.manager import SchedulerManager


@pytest.mark.parametrize("user,expected", [
    ("mininova.api", policy.Sender("api", None, "mininova.api")),
    ("mininova.conductor", policy.Sender("conductor", None, "mininova.conductor")),
    ("mininova.compute.node1.example", policy.Sender("compute", "node1.example",
                                                     "mininova.compute.node1.example")),
    ("mininova", None), ("guest", None), (None, None), ("", None), (".api", None),
    ("mininova.compute", None), ("mininova.api.x", None), ("mininova.admin", None),
])
def test_sender_of(user, expected):
    assert policy.sender_of(user) == expected


def test_rules_are_checked_when_declared():
    with pytest.raises(TypeError, match="unknown RPC roles"):
        policy.allow("admin")
    with pytest.raises(TypeError, match="cannot carry a user's request"):
        policy.allow("compute", user_request=True)


@pytest.mark.parametrize("manager", [ComputeManager, ConductorManager, SchedulerManager])
def test_every_entry_point_has_a_rule(manager):
    rules = policy.declared(manager, manager.RPC_METHODS)
    assert set(rules) == set(manager.RPC_METHODS)


def test_no_compute_may_call_a_compute_nor_carry_a_users_request():
    for manager in (ComputeManager, ConductorManager, SchedulerManager):
        for method, rule in manager.RPC_POLICY.items():
            if manager is ComputeManager or rule.user_request:
                assert "compute" not in rule.roles, (manager.__name__, method)
    assert "api" not in ComputeManager.RPC_POLICY["build_instance"].roles
    assert ComputeManager.RPC_POLICY["audit_report"].roles == {"manage"}


def test_check():
    rule = policy.allow("compute", "conductor")
    compute = policy.sender_of("m.compute.h1")
    policy.check(rule, "report", compute, {"host": "h1"}, strict=True)
    policy.check(rule, "report", compute, {}, strict=True)
    with pytest.raises(exception.RPCForbidden, match="not for host 'h2'"):
        policy.check(rule, "report", compute, {"host": "h2"}, strict=True)
    with pytest.raises(exception.RPCForbidden, match="only compute, conductor"):
        policy.check(rule, "report", policy.sender_of("m.api"), {}, strict=True)
    with pytest.raises(exception.RPCForbidden, match="unidentified"):
        policy.check(rule, "report", None, {}, strict=True)
    policy.check(rule, "report", None, {}, strict=False)  # one shared account
    with pytest.raises(exception.RPCForbidden, match="declares no policy"):
        policy.check(None, "report", compute, {}, strict=False)


class Endpoint:
    RPC_METHODS = frozenset({"report", "migrate"})
    RPC_POLICY = {"report": policy.allow("compute"),
                  "migrate": policy.allow("api", user_request=True)}

    def __init__(self):
        self.calls = []

    def report(self, ctxt, host):
        self.calls.append("report")

    def migrate(self, ctxt):
        self.calls.append("migrate")


class Incoming(base.Incoming):
    """A message as a transport hands it over, with the sender RabbitMQ vouched for."""

    def __init__(self, user_id, method, args, ctxt, call=True):
        self.user_id = user_id
        self.body = protocol.encode_request(ctxt, method, args, "1.0")
        self.message_id = "m1"
        self.reply_to = "reply" if call else None
        self.correlation_id = "c1" if call else None
        self.outcome, self.replies = None, []

    def ack(self):
        self.outcome = "ack"

    def reject(self):
        self.outcome = "dead-lettered"

    def reply(self, body):
        self.replies.append(json.loads(body))


class RoleTransport(memory_transport.MemoryTransport):
    user = "m.conductor"


def run(server, incoming):
    server._on_message(incoming)
    server._work.get()()
    return incoming


def test_server_refuses_a_forged_admin_request_from_a_compute():
    endpoint = Endpoint()
    server = rpc_server.RPCServer(RoleTransport(), rpc_target.Target("conductor"), [endpoint])
    admin = context.get_admin_context()
    call = run(server, Incoming("m.compute.h1", "migrate", {}, admin))
    assert call.outcome == "dead-lettered"
    assert call.replies[0]["failure"]["class"] == "RPCForbidden"
    cast = run(server, Incoming("m.compute.h1", "migrate", {}, admin, call=False))
    assert cast.outcome == "dead-lettered" and not cast.replies
    unknown = run(server, Incoming(None, "report", {"host": "h1"}, admin))
    assert unknown.outcome == "dead-lettered"  # a role server wants a role sender
    assert run(server, Incoming("m.compute.h1", "report", {"host": "h1"}, admin)).outcome == "ack"
    assert run(server, Incoming("m.api", "migrate", {}, admin)).outcome == "ack"
    assert endpoint.calls == ["report", "migrate"]


def test_a_shared_account_server_takes_unidentified_senders():
    endpoint = Endpoint()
    server = rpc_server.RPCServer(memory_transport.MemoryTransport(),
                                  rpc_target.Target("conductor"), [endpoint])
    admin = context.get_admin_context()
    assert run(server, Incoming(None, "migrate", {}, admin)).outcome == "ack"
    assert run(server, Incoming("m.compute.h1", "migrate", {}, admin)).outcome == "dead-lettered"


def test_account_permissions():
    configure, write, read, topic_write, topic_read = accounts.permissions("m.compute.h1")
    assert configure == r"^(compute\.h1|mininova\.reply\.m\.compute\.h1\..+)$"
    assert read == r"^(mininova|compute\.h1|mininova\.reply\.m\.compute\.h1\..+)$"
    assert topic_write == r"^(conductor|mininova\.reply\..+)$"
    _, _, read, topic_write, _ = accounts.permissions("m.api")
    assert read == r"^(mininova|mininova\.reply\.m\.api\..+)$"  # no service queue
    with pytest.raises(ValueError, match="names no role"):
        accounts.permissions("mininova")
    doc = accounts.definitions("v", {"m.api": "Zq9-secret", "m.compute.h1": "Zq9-secret"},
                               quorum=True)
    assert {q["name"] for q in doc["queues"]} == {"mininova.dead", "scheduler", "conductor",
                                                  "compute.h1"}
    assert all(q["arguments"]["x-queue-type"] == "quorum" for q in doc["queues"])
    assert "Zq9-secret" not in json.dumps(doc)


def test_password_hash_is_rabbitmqs_sha256():
    # rabbit_password_hashing_sha256 of "test12" with salt 908DC60A (RabbitMQ's docs)
    assert accounts.password_hash("test12", bytes.fromhex("908DC60A")) == \
        "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR"
