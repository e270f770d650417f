"""Least privilege on the real RabbitMQ: per-role accounts (common.rpc.accounts)
on a private vhost of the system broker, and the RPC server's sender policy
(common.rpc.policy) with the user_id that RabbitMQ vouches for."""
import os
import threading
import time
import uuid

import amqp
import amqp.exceptions
import kombu
import pytest

from common import context
from common import exception
from common import rpc
from common.rpc import policy

from mininova_lab import services
from mininova_lab.stack import Stack, qemu_img_create

pytestmark = pytest.mark.real_services("rabbitmq")

HOSTS = ("h1", "h2")


@pytest.fixture(scope="module")
def broker():
    base = "acl" + uuid.uuid4().hex[:8]
    vhost = "mininova-" + base
    passwords = {"%s.%s" % (base, role): uuid.uuid4().hex
                 for role in ("api", "scheduler", "conductor")}
    passwords.update({"%s.compute.%s" % (base, host): uuid.uuid4().hex for host in HOSTS})
    services.add_vhost(vhost)
    transports = []
    try:
        services.add_accounts(vhost, passwords)

        def user(role):
            return "%s.%s" % (base, role)

        def url(role):
            return services.rabbit_url(vhost).replace(
                "%s:" % services.rabbit_user(), "%s:" % user(role), 1).replace(
                ":%s@" % services.credentials()["RABBIT_PASSWORD"],
                ":%s@" % passwords[user(role)], 1)

        def transport(role):
            t = rpc.get_transport(url(role), publish_retry_timeout=5.0)
            transports.append(t)
            return t

        def connection(role):
            parts = url(role).split("://", 1)[1]
            credentials, _, rest = parts.partition("@")
            name, _, password = credentials.partition(":")
            hostport, _, path = rest.partition("/")
            conn = amqp.Connection(hostport, userid=name, password=password,
                                   virtual_host=path.replace("%2F", "/") or "/",
                                   confirm_publish=True)
            conn.connect()
            return conn

        yield type("Broker", (), {"vhost": vhost, "user": staticmethod(user),
                                  "transport": staticmethod(transport),
                                  "connection": staticmethod(connection)})
    finally:
        for t in transports:
            t.cleanup()
        services.delete_users(list(passwords))
        services.delete_vhost(vhost)


def refused(fn):
    with pytest.raises(amqp.exceptions.AccessRefused) as info:
        fn()
    assert "ACCESS_REFUSED" in str(info.value)
    return str(info.value)


def test_compute_cannot_publish_build_instance_to_another_host(broker):
    conn = broker.connection("compute.h1")
    try:
        channel = conn.channel()
        message = amqp.Message('{"method": "build_instance"}')
        text = refused(lambda: channel.basic_publish(message, exchange="mininova",
                                                     routing_key="compute.h2"))
        assert "compute.h2" in text
        channel = conn.channel()
        refused(lambda: channel.basic_publish(message, exchange="", routing_key="compute.h2"))
    finally:
        conn.collect()
    # Through mininova's own client: a typed error, no retry.
    client = rpc.RPCClient(broker.transport("compute.h1"), rpc.Target("compute", server="h2"))
    with pytest.raises(exception.BrokerAccessRefused, match="ACCESS_REFUSED"):
        client.cast(context.get_admin_context(), "build_instance", instance={})


@pytest.mark.parametrize("role,queue", [("compute.h1", "compute.h2"),
                                        ("api", "scheduler"), ("api", "compute.h1"),
                                        ("compute.h1", "conductor")])
def test_consuming_a_queue_not_ones_own_is_refused(broker, role, queue):
    conn = broker.connection(role)
    try:
        channel = conn.channel()
        refused(lambda: channel.basic_consume(queue, callback=lambda m: None))
        channel = conn.channel()
        refused(lambda: channel.queue_delete(queue))
    finally:
        conn.collect()


def test_a_publisher_cannot_claim_another_user(broker):
    conn = broker.connection("compute.h1")
    try:
        channel = conn.channel()
        message = amqp.Message("{}", user_id=broker.user("conductor"))
        with pytest.raises(amqp.exceptions.PreconditionFailed, match="user_id"):
            channel.basic_publish(message, exchange="mininova", routing_key="conductor")
    finally:
        conn.collect()


class Conductor:
    RPC_METHODS = frozenset({"report", "live_migrate_instance"})
    RPC_POLICY = {"report": policy.allow("compute", "conductor"),
                  "live_migrate_instance": policy.allow("api", "conductor", user_request=True)}

    def __init__(self):
        self.received = []

    def report(self, ctxt, host):
        self.received.append(("report", host, ctxt.is_admin))
        return host

    def live_migrate_instance(self, ctxt, instance_id):
        self.received.append(("live_migrate_instance", instance_id, ctxt.is_admin))
        return instance_id


def test_the_server_refuses_what_the_senders_role_may_not_send(broker):
    endpoint = Conductor()
    server = rpc.RPCServer(broker.transport("conductor"), rpc.Target("conductor"), [endpoint],
                           workers=2)
    server.start()
    try:
        admin = context.get_admin_context()
        compute = rpc.RPCClient(broker.transport("compute.h1"), rpc.Target("conductor"),
                                timeout=20)
        api = rpc.RPCClient(broker.transport("api"), rpc.Target("conductor"), timeout=20)
        # Allowed: a compute's report about itself, the API's request.
        assert compute.call(admin, "report", host="h1") == "h1"
        assert api.call(admin, "live_migrate_instance", instance_id="vm1") == "vm1"
        # A compute forging an admin's request, or speaking for another host.
        with pytest.raises(exception.RPCForbidden, match="only api, conductor may call"):
            compute.call(admin, "live_migrate_instance", instance_id="vm2")
        with pytest.raises(exception.RPCForbidden, match="not for host 'h2'"):
            compute.call(admin, "report", host="h2")
        # A cast is dead-lettered.
        compute.cast(admin, "live_migrate_instance", instance_id="vm3")
        conn = broker.connection("conductor")
        try:
            deadline = time.monotonic() + 30
            while conn.channel().queue_declare("mininova.dead", passive=True).message_count < 1:
                assert time.monotonic() < deadline, "the refused cast was not dead-lettered"
                time.sleep(0.05)
        finally:
            conn.collect()
        assert [r[1] for r in endpoint.received] == ["h1", "vm1"]
    finally:
        server.wait(timeout=10)


def test_compute_serves_its_own_queue_with_its_account(broker):
    class Compute:
        RPC_METHODS = frozenset({"build_instance"})
        RPC_POLICY = {"build_instance": policy.allow("conductor", user_request=True)}
        built = threading.Event()

        def build_instance(self, ctxt, instance):
            self.built.set()

    endpoint = Compute()
    server = rpc.RPCServer(broker.transport("compute.h1"), rpc.Target("compute", server="h1"),
                           [endpoint], workers=1)
    server.start()
    try:
        conductor = rpc.RPCClient(broker.transport("conductor"), rpc.Target("compute"))
        conductor.prepare(server="h1").cast(context.get_admin_context(), "build_instance",
                                            instance={})
        assert endpoint.built.wait(30)
    finally:
        server.wait(timeout=10)


@pytest.mark.real_services("rabbitmq", "postgresql", "http")
@pytest.mark.parametrize("quorum", [False, True], ids=["classic", "quorum"])
def test_stack_on_role_accounts(tmp_path, quorum):
    """The four daemons each on its own account (the API's, the scheduler's,
    the conductor's, the compute host's; mininova-manage's for the audit),
    compute on libvirt's test driver: a VM is built, rebooted, audited and
    deleted; nobody's message was refused; the stack's compute account cannot
    read the scheduler's queue."""
    extra = "connection_uri = test:///default\n"
    if quorum:
        extra += "[oslo_messaging_rabbit]\nrabbit_quorum_queue = true\n"
    stack = Stack(tmp_path / "stack", compute_driver="fake-libvirt", network="",
                  extra_conf=extra, broker_accounts=True)
    try:
        stack.start()
        base = os.path.join(stack.workdir, "blank.qcow2")
        qemu_img_create(base, "1G")
        stack.add_image("blank", base)
        r = stack.post("/v1/vms", {"name": "acl", "image": "blank", "flavor": "m1.tiny"})
        assert r.status_code == 202, r.text
        vm_id = r.json()["vm"]["id"]
        stack.wait_status(vm_id, "ACTIVE", timeout=120)
        stack.action(vm_id, {"reboot": {"type": "SOFT"}})
        stack.wait_status(vm_id, "ACTIVE", timeout=60)
        assert "acl" not in stack.manage("audit")  # manage -> compute: no orphan
        assert stack.delete_all_vms(timeout=60)
        logs = stack.logs_text()
        assert "RPCForbidden" not in logs and "ACCESS_REFUSED" not in logs
        queues = services.rabbitmqctl("list_queues", "-p", stack.vhost, "name",
                                      "arguments").stdout
        assert ("quorum" in queues) == quorum, queues
        compute_user = "%s.compute.%s" % (stack.tag, stack.host)
        url = stack.broker_url(compute_user).replace("rabbit://", "amqp://", 1)
        conn = kombu.Connection(url)
        try:
            channel = conn.channel()
            with pytest.raises(amqp.exceptions.AccessRefused):
                channel.basic_consume("scheduler", callback=lambda m: None)
        finally:
            conn.release()
    finally:
        stack.stop()
