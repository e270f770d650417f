"""common.rpc against the real RabbitMQ, as mininova's own RabbitMQ user
(mininova_lab/services.py).

Every test uses its own topic (uuid suffix) and deletes its queues at the end.
"""
import json
import logging
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid

import kombu
import pytest

from common import context
from common import exception
from common import rpc
from common.rpc import kombu_transport

from mininova_lab import services

pytestmark = pytest.mark.real_services("rabbitmq")

URL = services.rabbit_url()
AMQP_URL = "amqp://" + URL.split("://", 1)[1]
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met within %s s" % timeout)
        time.sleep(0.01)


class Endpoint:
    RPC_METHODS = frozenset({"record", "echo", "missing", "crash", "meet"})

    def __init__(self):
        self.received = []
        self.started = threading.Event()
        self.barrier = None
        self.lock = threading.Lock()

    def record(self, ctxt, **kwargs):
        self.received.append(kwargs)

    def echo(self, ctxt, value):
        current = context.get_current()
        return {"value": value, "request_id": current.request_id if current else None}

    def missing(self, ctxt, name):
        raise exception.InstanceNotFound(instance=name)

    def crash(self, ctxt):
        raise RuntimeError("kaput")

    def meet(self, ctxt, parties):
        """Return once ``parties`` handlers are in here at the same time
        (BrokenBarrierError after 30 s if they never are)."""
        with self.lock:
            if self.barrier is None:
                self.barrier = threading.Barrier(parties)
        self.barrier.wait(timeout=30)
        return True


@pytest.fixture
def admin():
    """A plain kombu channel for looking at queues the way a person would."""
    conn = kombu.Connection(AMQP_URL, connect_timeout=2)
    conn.ensure_connection(max_retries=1)
    channel = conn.channel()
    yield channel
    conn.release()


@pytest.fixture
def topic(admin):
    name = "test-rpc-%s" % uuid.uuid4().hex[:10]
    yield name
    for queue in (name, name + ".host1", name + ".host2"):
        admin.queue_delete(queue)


@pytest.fixture
def transports():
    made = []

    def make(**options):
        made.append(rpc.get_transport(URL, **options))
        return made[-1]
    yield make
    for transport in made:
        transport.cleanup()


@pytest.fixture
def servers():
    started = []

    def serve(transport, target, endpoint=None, workers=16):
        endpoint = endpoint or Endpoint()
        server = rpc.RPCServer(transport, target, [endpoint], workers=workers)
        server.start()
        started.append(server)
        return endpoint, server
    yield serve
    for server in started:
        server.stop()
    for server in started:
        server.wait(timeout=5)


@pytest.fixture
def ctxt():
    return context.RequestContext(project_id="p1", user_id="u1")


def take_dead_letter(admin, marker, timeout=10.0):
    """Find (and remove) the message containing ``marker`` in mininova.dead."""
    def scan():
        found, seen = None, 0
        while seen < 10000:
            message = admin.basic_get("mininova.dead", no_ack=False)
            if message is None:
                break
            seen += 1
            body = message.body
            if marker.encode() in (body if isinstance(body, bytes) else body.encode()):
                admin.basic_ack(message.delivery_tag)
                found = message
                break
        admin.basic_recover(requeue=True)  # give the others back, untouched
        return found
    return wait_for(scan, timeout)


def test_cast_and_call_round_trip(transports, topic, servers, ctxt):
    transport = transports()
    endpoint, _ = servers(transport, rpc.Target(topic))
    client = rpc.RPCClient(transport, rpc.Target(topic), timeout=10)
    client.cast(ctxt, "record", n=1, nested={"list": [1, 2.5, None, "é"]})
    assert client.call(ctxt, "echo", value="hi") == {"value": "hi",
                                                     "request_id": ctxt.request_id}
    wait_for(lambda: endpoint.received)
    assert endpoint.received == [{"n": 1, "nested": {"list": [1, 2.5, None, "é"]}}]


def test_client_and_server_in_separate_transports(transports, topic, servers, ctxt):
    _, _ = servers(transports(), rpc.Target(topic, server="host1"))
    client = rpc.RPCClient(transports(), rpc.Target(topic), timeout=10)
    assert client.prepare(server="host1").call(ctxt, "echo", value=3)["value"] == 3


def test_wire_format_and_topology(transports, topic, admin, ctxt):
    """What a person sees in the management UI: readable JSON, persistent, dead-lettered."""
    rpc.RPCClient(transports(), rpc.Target(topic, version="1.3")).cast(
        ctxt, "build_instance", instance_uuid="abc", flavor={"vcpus": 1})
    message = wait_for(lambda: admin.basic_get(topic, no_ack=True))
    assert message.properties["content_type"] == "application/json"
    assert message.properties["delivery_mode"] == 2
    assert message.properties["message_id"]
    assert abs(message.properties["timestamp"] - time.time()) < 60
    assert json.loads(message.body) == {
        "version": "1.3", "method": "build_instance",
        "args": {"instance_uuid": "abc", "flavor": {"vcpus": 1}},
        "context": ctxt.to_dict()}
    # The queue is durable with the dead-letter exchange: redeclaring it the
    # same way passes, with other arguments RabbitMQ would refuse.
    kombu_transport.declare_queue(admin, topic)


def test_concurrent_calls_from_20_threads(transports, topic, servers, ctxt):
    transport = transports()
    servers(transport, rpc.Target(topic), workers=16)
    client = rpc.RPCClient(transport, rpc.Target(topic), timeout=20)
    results, errors = {}, []

    def worker(i):
        try:
            for j in range(10):
                results[(i, j)] = client.call(ctxt, "echo", value=[i, j])["value"]
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert results == {(i, j): [i, j] for i in range(20) for j in range(10)}


def test_handlers_overlap(transports, topic, servers, ctxt):
    """8 calls on 8 workers run side by side: each handler returns only once
    all 8 are inside it at the same time (run one after another, the first
    would wait for the others until its barrier broke)."""
    transport = transports()
    servers(transport, rpc.Target(topic), workers=8)
    client = rpc.RPCClient(transport, rpc.Target(topic), timeout=60)
    results, errors = [], []

    def call():
        try:
            results.append(client.call(ctxt, "meet", parties=8))
        except Exception as e:  # reported below
            errors.append(e)
    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    assert errors == [] and results == [True] * 8


def test_typed_remote_errors(transports, topic, servers, admin, ctxt):
    transport = transports()
    servers(transport, rpc.Target(topic))
    client = rpc.RPCClient(transport, rpc.Target(topic), timeout=10)
    with pytest.raises(exception.InstanceNotFound, match="VM vm-9 could not be found"):
        client.call(ctxt, "missing", name="vm-9")
    with pytest.raises(exception.RemoteError) as info:
        client.call(ctxt, "crash")
    assert info.value.kwargs == {"exc_type": "RuntimeError", "value": "kaput"}
    with pytest.raises(exception.NoSuchMethod):
        client.call(ctxt, "no_such_method")
    take_dead_letter(admin, ctxt.request_id)  # the caller was told, and it is dead-lettered


def test_call_timeout(transports, topic, ctxt):
    client = rpc.RPCClient(transports(), rpc.Target(topic), timeout=0.5)
    start = time.monotonic()
    with pytest.raises(exception.MessagingTimeout) as info:
        client.call(ctxt, "echo", value=1)
    # It waited its own timeout, not the default (30 s): a bound, not a speed.
    assert 0.5 <= time.monotonic() - start < 15
    assert info.value.kwargs["topic"] == topic


def test_message_sent_before_server_exists_is_delivered(transports, topic, servers, ctxt):
    rpc.RPCClient(transports(), rpc.Target(topic, server="host2")).cast(ctxt, "record", early=1)
    endpoint, _ = servers(transports(), rpc.Target(topic, server="host2"))
    wait_for(lambda: endpoint.received)
    assert endpoint.received == [{"early": 1}]


def test_malformed_body_is_dead_lettered_and_server_keeps_serving(
        transports, topic, servers, admin, ctxt):
    transport = transports()
    servers(transport, rpc.Target(topic))
    marker = uuid.uuid4().hex
    kombu_transport.declare_queue(admin, topic)  # a raw publish declares nothing itself
    producer = kombu.Producer(admin)
    producer.publish("this is not json " + marker, exchange="mininova", routing_key=topic,
                     content_type="application/json", content_encoding="utf-8")
    producer.publish(json.dumps({"version": "9.0", "method": "echo", "args": {},
                                 "context": {"request_id": marker}}),
                     exchange="mininova", routing_key=topic,
                     content_type="application/json", content_encoding="utf-8")
    producer.publish(b"\xff\xfe undecodable " + marker.encode(), exchange="mininova",
                     routing_key=topic, content_type="application/json",
                     content_encoding="utf-8")
    dead = take_dead_letter(admin, "not json " + marker)
    assert dead.properties["application_headers"]["x-death"][0]["queue"] == topic
    assert dead.properties["application_headers"]["x-death"][0]["reason"] == "rejected"
    take_dead_letter(admin, '"request_id": "%s"' % marker)  # wrong major version
    take_dead_letter(admin, "undecodable " + marker)
    client = rpc.RPCClient(transport, rpc.Target(topic), timeout=10)
    assert client.call(ctxt, "echo", value="alive")["value"] == "alive"


SERVER_SCRIPT = """
import sys, pathlib, threading
from common import rpc

class Blocking:
    RPC_METHODS = {"record"}

    def record(self, ctxt, **kwargs):
        pathlib.Path(sys.argv[2]).write_text("started")
        threading.Event().wait()   # never finishes: killed while handling

transport = rpc.get_transport(%(url)r)
server = rpc.RPCServer(transport, rpc.Target(sys.argv[1]), [Blocking()], workers=2)
server.start()
threading.Event().wait()
"""


def test_killed_server_message_is_redelivered(transports, topic, servers, ctxt, tmp_path,
                                             caplog):
    flag = tmp_path / "started"
    proc = subprocess.Popen([sys.executable, "-c", SERVER_SCRIPT % {"url": URL}, topic, str(flag)],
                            env=dict(os.environ, PYTHONPATH=REPO))
    try:
        rpc.RPCClient(transports(), rpc.Target(topic)).cast(ctxt, "record", job=42)
        wait_for(flag.exists, timeout=20)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    caplog.set_level(logging.DEBUG, logger="common.rpc.server")
    endpoint, _ = servers(transports(), rpc.Target(topic))
    wait_for(lambda: endpoint.received)
    assert endpoint.received == [{"job": 42}]
    assert any("redelivered" in r.getMessage() for r in caplog.records)


def test_stopped_server_leaves_unfinished_message_for_the_next(transports, topic, servers,
                                                               ctxt):
    release = threading.Event()
    first = Endpoint()
    first.record = lambda ctxt, **kw: (first.received.append(kw), release.wait(20))
    server = rpc.RPCServer(transports(), rpc.Target(topic), [first], workers=2)
    server.start()
    rpc.RPCClient(transports(), rpc.Target(topic)).cast(ctxt, "record", job=7)
    wait_for(lambda: first.received)
    server.stop()
    server.wait(timeout=0.2)  # gives up on the blocked handler: never acked
    second, _ = servers(transports(), rpc.Target(topic))
    wait_for(lambda: second.received)
    assert second.received == [{"job": 7}]
    release.set()


def _kill_socket(amqp_connection):
    """Cut a connection under its owner's feet, as a broker restart would."""
    amqp_connection.sock.shutdown(socket.SHUT_RDWR)


def test_consumer_and_publisher_reconnect(transports, topic, servers, ctxt, caplog):
    caplog.set_level(logging.INFO, logger="common.rpc")
    transport = transports()
    endpoint, server = servers(transport, rpc.Target(topic))
    client = rpc.RPCClient(transport, rpc.Target(topic), timeout=10)
    assert client.call(ctxt, "echo", value=1)["value"] == 1
    _kill_socket(server._listener._channel.connection)
    _kill_socket(transport._publisher._conn.connection)
    client.cast(ctxt, "record", after="reconnect")  # publisher reconnects by itself
    wait_for(lambda: endpoint.received, timeout=15)  # consumer came back and got it
    assert client.call(ctxt, "echo", value=2)["value"] == 2
    messages = [r.getMessage() for r in caplog.records]
    assert any("lost the message broker" in m for m in messages)
    assert any("Reconnected to the message broker; consuming %s" % topic in m for m in messages)


def test_unreachable_broker_raises_service_unavailable(ctxt):
    """It gives up (after publish_retry_timeout) instead of waiting for the
    broker: the bound says "no hang", it is not a speed figure."""
    transport = rpc.get_transport(services.rabbit_url(port=1),
                                  publish_retry_timeout=1.0)
    client = rpc.RPCClient(transport, rpc.Target("nowhere"), timeout=5)
    for send in (client.cast, client.call):
        start = time.monotonic()
        with pytest.raises(exception.ServiceUnavailable, match="message broker unreachable"):
            send(ctxt, "echo", value=1)
        assert time.monotonic() - start < 30
    transport.cleanup()


def test_casts_and_calls_in_a_row(transports, topic, servers, ctxt):
    """200 casts then 200 calls on one client: every cast arrives once, in
    order (one consumer), every call gets its own answer. The latency is
    printed for information only (figures belong in bench/)."""
    transport = transports()
    endpoint, _ = servers(transport, rpc.Target(topic), workers=1)
    client = rpc.RPCClient(transport, rpc.Target(topic), timeout=30)
    client.call(ctxt, "echo", value=0)  # warm up: connections, reply queue, declares
    casts, calls = [], []
    for i in range(200):
        start = time.perf_counter()
        client.cast(ctxt, "record", i=i)
        casts.append(time.perf_counter() - start)
    for i in range(200):
        start = time.perf_counter()
        assert client.call(ctxt, "echo", value=i)["value"] == i
        calls.append(time.perf_counter() - start)
    wait_for(lambda: len(endpoint.received) >= 200, timeout=60)
    assert endpoint.received == [{"i": i} for i in range(200)]
    cast_p50, call_p50 = statistics.median(casts) * 1000, statistics.median(calls) * 1000
    print("\nRPC latency p50: cast publish %.2f ms, call round trip %.2f ms" % (cast_p50, call_p50))


def test_idle_consumer_sleeps_and_wakes_for_acks_and_stop(transports, topic, servers, ctxt):
    """Consumers block on their socket. Idle, one sleeps through each whole
    wait (it wakes for heartbeats, it does not spin). An ack queued by a
    worker and stop() wake it themselves: with its idle wakeup an hour away,
    20 casts through one worker still all arrive (prefetch 1: each next
    delivery waits for the previous ack), and stop() still ends the thread."""
    transport = transports(heartbeat=0)  # no heartbeat frames to end a wait either
    endpoint, server = servers(transport, rpc.Target(topic), workers=1)
    client = rpc.RPCClient(transport, rpc.Target(topic), timeout=30)
    client.call(ctxt, "echo", value=0)
    listener = server._listener
    waits = []  # (seconds waited, socket readable) for each wait, as it ends
    wait_readable = listener._wait_readable

    def timed(sock):
        started = time.monotonic()
        readable = wait_readable(sock)
        waits.append((time.monotonic() - started, readable))
        return readable
    listener._wait_readable = timed

    def woken():
        """Make the thread start a new wait (reading idle_wakeup anew); the
        index of the next wait but one (if that wait ended by its timeout
        just before the wakeup came, the next one ends at once on it)."""
        seen = len(waits)
        listener.wake()
        wait_for(lambda: len(waits) > seen, timeout=30)
        return len(waits) + 1

    # Idle: five waits that end by their timeout, each lasting all of it.
    listener.idle_wakeup = 0.2
    first = woken()
    wait_for(lambda: sum(1 for _, r in waits[first:] if not r) >= 5, timeout=60)
    idle = [s for s, readable in waits[first:] if not readable]
    assert min(idle) >= 0.15, idle  # no early return: it slept (load only lengthens)

    # Acks wake it: nothing else would for an hour.
    listener.idle_wakeup = 3600
    try:
        woken()
        for i in range(20):
            client.cast(ctxt, "record", i=i)
        wait_for(lambda: len(endpoint.received) == 20, timeout=60)

        # So does stop().
        stopper = threading.Thread(target=server.wait, kwargs={"timeout": 5}, daemon=True)
        stopper.start()
        stopper.join(60)
        assert not stopper.is_alive() and not listener._thread.is_alive()
    finally:  # failed: do not leave the thread asleep for an hour
        listener.idle_wakeup = 0.2
        listener.wake()
