"""RabbitMQ transport over kombu / py-amqp.

Topology (all durable, declared idempotently by whoever uses it, so a cast
to a service that has not started yet waits in its queue):

- topic exchange ``mininova``; one queue per Target (``scheduler``,
  ``compute.node1``) bound with routing key = queue name and
  ``x-dead-letter-exchange: mininova.dlx``;
- fanout exchange ``mininova.dlx`` -> queue ``mininova.dead``, where rejected
  (malformed, unknown method, wrong version) messages end for a person to read;
- per transport, one exclusive auto-delete ``mininova.reply.<user>.<uuid>``
  queue (``user``: the broker user) for call replies, also bound to
  ``mininova`` (routing key = its name). A
  call says so with the header ``reply_exchange: mininova``, and the server
  publishes its reply there, so that ``mininova trace`` sees replies too; a
  call without the header (an older caller) gets its reply on the default
  exchange.

With ``quorum_queues`` the Target queues and ``mininova.dead`` are quorum
queues (``x-queue-type: quorum``: replicated by Raft over the cluster's nodes,
always durable, never exclusive or auto-delete), with ``x-delivery-limit``:
a message delivered that many times without an ack (say, one that kills its
daemon each time) is dead-lettered instead of looping. Reply queues stay
classic, exclusive and transient: a reply is only of use to the connection
that waits for it, and dies with it; replicating it would buy nothing (a
quorum queue cannot be exclusive anyway). A caller whose node died re-declares
its reply queue on another node and its pending calls time out. RabbitMQ
refuses to re-declare a queue with another type (PRECONDITION_FAILED): every
client and server of a vhost must agree on the option.

Every message carries the AMQP ``user_id`` of its connection, which RabbitMQ
checks: the receiving server knows which account sent it (``policy``). With
per-role accounts (``accounts``) a daemon may declare only its own queues; the
rest it only checks to exist (``kombu_topology.Topology``).

``url`` may name several brokers of one cluster,
``rabbit://u:p@h1:5672,u:p@h2:5672/vhost``: each connection goes to the first
that answers, starting with the last that did.

py-amqp connections are not thread-safe, so each one has a single owner:
the publisher connection is only touched under its lock (by any thread that
casts, calls or - for servers - replies), and every consumer connection only
by its own thread (see ``kombu_consumer``).
"""
import logging
import os
import threading
import time
import urllib.parse
import uuid

import amqp
import amqp.exceptions
import kombu

from common import exception
from common.rpc import kombu_consumer
from common.rpc import kombu_topology
from common.rpc import protocol
from common.rpc import transport as base

LOG = logging.getLogger(__name__)

EXCHANGE = kombu_topology.EXCHANGE
DLX = kombu_topology.DLX
DEAD_QUEUE = kombu_topology.DEAD_QUEUE
queue_arguments = kombu_topology.queue_arguments
declare_queue = kombu_topology.declare_queue
Topology = kombu_topology.Topology
RECOVERABLE = kombu_consumer.RECOVERABLE


def parse_url(url):
    """``rabbit://u:p@h1:p1,u:p@h2:p2/vhost`` -> [``amqp://u:p@h1:p1/vhost``, ...].

    A host without credentials takes those of the first; ValueError for a
    url without a host.
    """
    _, sep, rest = url.partition("://")
    if not sep:
        raise ValueError("transport url without scheme")
    netlocs, slash, path = rest.partition("/")
    hosts = [h.strip() for h in netlocs.split(",")]
    if not all(hosts):
        raise ValueError("transport url with an empty host")
    credentials = hosts[0].rpartition("@")[0]
    urls = []
    for host in hosts:
        if "@" not in host and credentials:
            host = credentials + "@" + host
        urls.append("amqp://" + host + slash + path)
    return urls


def _safe(amqp_url):
    """``amqp_url`` without its credentials, for logs."""
    parts = urllib.parse.urlsplit(amqp_url)
    return "%s:%s" % (parts.hostname, parts.port or 5672)


def _now():
    return int(time.time())  # AMQP timestamp: whole seconds since the epoch


class KombuTransport(base.Transport):
    """One publisher connection and (from the first call) one reply listener.

    ``publish_retry_timeout``: seconds cast/call keep retrying an unreachable
    broker before raising ServiceUnavailable (callers are HTTP requests: they
    must not hang). ``poll_interval``: how long a consumer thread that has data on
    its socket waits for the rest of a message before it runs queued acks.
    ``quorum_queues``, ``delivery_limit``: see the module docstring.
    ``reconnect_interval``, ``reconnect_max``: first and longest pause of a
    consumer between two reconnection attempts (doubled each time, jittered).
    """

    reply_exchange = EXCHANGE  # reply queues are bound to it (see above)

    def __init__(self, url, publish_retry_timeout=2.0, connect_timeout=1.0,
                 heartbeat=20, poll_interval=0.05, quorum_queues=False, delivery_limit=0,
                 reconnect_interval=0.5, reconnect_max=5.0):
        self.url = url
        self._amqp_urls = parse_url(url)
        self._next_host = 0  # index in _amqp_urls of the broker tried first
        self.quorum_queues = quorum_queues
        self.delivery_limit = delivery_limit
        self.reconnect_interval = reconnect_interval
        self.reconnect_max = max(reconnect_max, reconnect_interval)
        self.publish_retry_timeout = publish_retry_timeout
        self.connect_timeout = connect_timeout
        self.heartbeat = heartbeat
        self.poll_interval = poll_interval
        self.user = urllib.parse.unquote(
            urllib.parse.urlsplit(self._amqp_urls[0]).username or "") or None
        self.topology = Topology(quorum_queues, delivery_limit)
        self._publisher = _Publisher(self)
        self._replies = None
        self._replies_lock = threading.Lock()

    def connect(self, consumer, timeout=None, name="publisher"):
        """A connected kombu.Connection to the first broker of the url that
        answers, starting with the last one that did; raises (the last
        error) at once if none does.

        ``name`` shows in the management UI's connection list.
        """
        options = {"write_timeout": 5, "client_properties": {
            "connection_name": "mininova %s (pid %d)" % (name, os.getpid())}}
        if not consumer:
            options["confirm_publish"] = True
        first = self._next_host
        for attempt in range(len(self._amqp_urls)):
            index = (first + attempt) % len(self._amqp_urls)
            conn = kombu.Connection(self._amqp_urls[index],
                                    connect_timeout=timeout or self.connect_timeout,
                                    heartbeat=self.heartbeat if consumer else 0,
                                    transport_options=options)
            try:
                conn.ensure_connection(max_retries=0)  # kombu's own retry would sleep 2 s
            except RECOVERABLE:
                conn.collect()
                if attempt == len(self._amqp_urls) - 1:
                    raise
                LOG.warning("Message broker %s unreachable; trying the next one",
                            _safe(self._amqp_urls[index]))
                continue
            self._next_host = index
            return conn
        raise AssertionError("unreachable")  # the loop returns or raises

    def skip_broker(self):
        """The next connection starts with the broker after the current one."""
        self._next_host = (self._next_host + 1) % len(self._amqp_urls)

    def declare_queue(self, conn, channel, name):
        """Declare queue ``name`` (and the exchanges) where this user may;
        returns the channel to go on with (see Topology)."""
        return self.topology.declare_queue(conn, channel, name)

    def send(self, target, body, *, wait_for_reply=False, timeout=None):
        properties = {"message_id": uuid.uuid4().hex, "timestamp": _now(), "delivery_mode": 2}
        if not wait_for_reply:
            self._publisher.publish(body, EXCHANGE, target.queue, declare=target.queue,
                                    **properties)
            return None
        replies = self._reply_listener()
        correlation_id = uuid.uuid4().hex
        waiter = replies.expect(correlation_id)
        try:
            self._publisher.publish(body, EXCHANGE, target.queue, declare=target.queue,
                                    correlation_id=correlation_id,
                                    reply_to=replies.queue_name,
                                    headers={"reply_exchange": EXCHANGE}, **properties)
            return waiter.wait(timeout)
        finally:
            replies.forget(correlation_id)

    def publish_reply(self, reply_to, correlation_id, body, exchange=None):
        """``exchange``: the caller's ``reply_exchange`` header; only ours
        is honoured, anything else means the default exchange."""
        exchange = EXCHANGE if exchange == EXCHANGE else ""
        self._publisher.publish(body, exchange, reply_to, correlation_id=correlation_id,
                                message_id=uuid.uuid4().hex, timestamp=_now(),
                                delivery_mode=1)

    def listen(self, target, prefetch):
        return kombu_consumer.ServerListener(self, target.queue, prefetch, self.declare_queue)

    def _reply_listener(self):
        with self._replies_lock:
            if self._replies is None:
                self._replies = kombu_consumer.ReplyListener(self)
                self._replies.start()
            replies = self._replies
        if not replies.ready.wait(self.publish_retry_timeout):
            raise exception.ServiceUnavailable(
                reason="message broker unreachable: reply queue not ready")
        return replies

    def cleanup(self):
        with self._replies_lock:
            replies, self._replies = self._replies, None
        if replies is not None:
            replies.wait()
        self._publisher.close()


class _Publisher:
    """The transport's one publisher connection, shared by threads under a lock.

    One connection per transport, not per message: opening one costs several
    round trips. Every publish waits for the broker's confirm, so when
    ``publish`` returns the message is safely queued (persisted if durable).
    """

    def __init__(self, transport):
        self._transport = transport
        self._lock = threading.Lock()
        self._conn = self._channel = None
        self._declared = set()

    def publish(self, body, exchange, routing_key, declare=None, **properties):
        deadline = time.monotonic() + self._transport.publish_retry_timeout
        delay, error = 0.1, None
        while True:
            # A thread queued behind a failing publish must not wait longer
            # than its own budget either.
            if not self._lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
                break
            try:
                self._publish_locked(body, exchange, routing_key, declare, deadline, properties)
                return
            except amqp.exceptions.PreconditionFailed as exc:
                # The queue exists with other arguments (classic vs quorum):
                # no retry mends that.
                self._close_locked()
                raise exception.ServiceUnavailable(
                    reason=kombu_consumer.queue_mismatch(exc, self._transport))
            except amqp.exceptions.AccessRefused as exc:
                # This account may not publish there (README, Broker
                # accounts): no retry mends that either.
                self._close_locked()
                raise exception.BrokerAccessRefused(
                    what="publishing to %s" % (routing_key,),
                    reason=getattr(exc, "reply_text", None) or exc) from None
            except RECOVERABLE as exc:
                error = exc
                self._close_locked()
                if isinstance(exc, TimeoutError):
                    # Connected, but no confirm in time: a node cut off from
                    # its peers (or very slow) keeps the socket open and says
                    # nothing. The next attempt goes to another node.
                    self._transport.skip_broker()
            except BaseException:
                self._close_locked()
                raise
            finally:
                self._lock.release()
            if time.monotonic() + delay >= deadline:
                break
            LOG.warning("Publishing to %s failed (%s); retrying", routing_key, error)
            time.sleep(kombu_consumer.jittered(delay))
            delay = min(delay * 2, 1.0)
        raise exception.ServiceUnavailable(
            reason="message broker unreachable: %s" % (error or "publisher busy"))

    def _publish_locked(self, body, exchange, routing_key, declare, deadline, properties):
        def remaining():
            return max(0.05, deadline - time.monotonic())

        if self._conn is None:
            self._conn = self._transport.connect(
                consumer=False, timeout=min(self._transport.connect_timeout, remaining()))
            self._channel = self._conn.channel()
            self._declared = set()
        if declare is not None and declare not in self._declared:
            self._channel = self._transport.declare_queue(self._conn, self._channel, declare)
            self._declared.add(declare)
        # py-amqp directly: kombu's Producer adds nothing used here, only its
        # own per-message work. The channel is in confirm mode
        # (confirm_publish), so this returns once the broker has the message.
        headers = properties.pop("headers", None)
        if headers:
            properties["application_headers"] = headers
        # user_id: RabbitMQ refuses it unless it is this connection's user, so
        # the receiving server knows who sent the message (common.rpc.policy).
        properties["user_id"] = self._conn.userid
        message = amqp.Message(body.encode("utf-8") if isinstance(body, str) else body,
                               content_type=protocol.CONTENT_TYPE, content_encoding="utf-8",
                               **properties)
        # A confirm waited for a part of the budget only, so that a node gone
        # silent leaves time to publish on another (a duplicate of a message
        # the silent node did keep is what at-least-once allows).
        self._channel.basic_publish(message, exchange=exchange, routing_key=routing_key,
                                    confirm_timeout=min(remaining(), self._confirm_timeout()))

    def _confirm_timeout(self):
        return max(1.0, self._transport.publish_retry_timeout / 4)

    def _close_locked(self):
        conn, self._conn = self._conn, None
        self._channel = None
        if conn is not None:
            try:
                conn.collect()  # drop the socket without a close handshake that may hang
            except Exception:  # already broken: nothing left to release
                pass

    def close(self):
        with self._lock:
            conn, self._conn = self._conn, None
            self._channel = None
        if conn is not None:
            try:
                conn.release()
            except Exception:
                LOG.debug("Error closing publisher connection", exc_info=True)
