"""RabbitMQ transport over kombu / py-amqp.

Topology (all durable, declared idempotently by whoever uses it, so a cast
to a service that has not started yet waits in its queue):

- topic exchange ``mininova``; one queue per Target (``scheduler``,
  ``compute.node1``) bound with routing key = queue name and
  ``x-dead-letter-exchange: mininova.dlx``;
- fanout exchange ``mininova.dlx`` -> queue ``mininova.dead``, where rejected
  (malformed, unknown method, wrong version) messages end for a person to read;
- per transport, one exclusive auto-delete ``mininova.reply.<uuid>`` queue
  for call replies, also bound to ``mininova`` (routing key = its name). A
  call says so with the header ``reply_exchange: mininova``, and the server
  publishes its reply there, so that ``mininova trace`` sees replies too; a
  call without the header (an older caller) gets its reply on the default
  exchange.

py-amqp connections are not thread-safe, so each one has a single owner:
the publisher connection is only touched under its lock (by any thread that
casts, calls or - for servers - replies), and every consumer connection only
by its own thread (see ``kombu_consumer``).
"""
import logging
import os
import threading
import time
import uuid

import amqp
import kombu

from common import exception
from common.rpc import kombu_consumer
from common.rpc import protocol
from common.rpc import transport as base

LOG = logging.getLogger(__name__)

EXCHANGE = "mininova"
DLX = "mininova.dlx"
DEAD_QUEUE = "mininova.dead"
RECOVERABLE = kombu_consumer.RECOVERABLE


def declare_queue(channel, name):
    """Declare the exchanges, the dead-letter queue and queue ``name``.

    Client and server call this with identical arguments: RabbitMQ refuses a
    re-declaration with different ones (PRECONDITION_FAILED).
    """
    dlx = kombu.Exchange(DLX, "fanout", durable=True)
    kombu.Queue(DEAD_QUEUE, dlx, routing_key="", durable=True)(channel).declare()
    exchange = kombu.Exchange(EXCHANGE, "topic", durable=True)
    kombu.Queue(name, exchange, routing_key=name, durable=True,
                queue_arguments={"x-dead-letter-exchange": DLX})(channel).declare()


def _now():
    return int(time.time())  # AMQP timestamp: whole seconds since the epoch


class KombuTransport(base.Transport):
    """One publisher connection and (from the first call) one reply listener.

    ``publish_retry_timeout``: seconds cast/call keep retrying an unreachable
    broker before raising ServiceUnavailable (callers are HTTP requests: they
    must not hang). ``poll_interval``: how long a consumer thread that has data on
    its socket waits for the rest of a message before it runs queued acks.
    """

    reply_exchange = EXCHANGE  # reply queues are bound to it (see above)

    def __init__(self, url, publish_retry_timeout=2.0, connect_timeout=1.0,
                 heartbeat=20, poll_interval=0.05):
        self.url = url
        self._amqp_url = "amqp://" + url.split("://", 1)[1]
        self.publish_retry_timeout = publish_retry_timeout
        self.connect_timeout = connect_timeout
        self.heartbeat = heartbeat
        self.poll_interval = poll_interval
        self._publisher = _Publisher(self)
        self._replies = None
        self._replies_lock = threading.Lock()

    def connect(self, consumer, timeout=None, name="publisher"):
        """A connected kombu.Connection; raises at once if the broker is down.

        ``name`` shows in the management UI's connection list.
        """
        options = {"write_timeout": 5, "client_properties": {
            "connection_name": "mininova %s (pid %d)" % (name, os.getpid())}}
        if not consumer:
            options["confirm_publish"] = True
        conn = kombu.Connection(self._amqp_url,
                                connect_timeout=timeout or self.connect_timeout,
                                heartbeat=self.heartbeat if consumer else 0,
                                transport_options=options)
        conn.ensure_connection(max_retries=0)  # kombu's own retry would sleep 2 s
        return conn

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
        return kombu_consumer.ServerListener(self, target.queue, prefetch, declare_queue)

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
            except RECOVERABLE as exc:
                error = exc
                self._close_locked()
            except BaseException:
                self._close_locked()
                raise
            finally:
                self._lock.release()
            if time.monotonic() + delay >= deadline:
                break
            LOG.warning("Publishing to %s failed (%s); retrying", routing_key, error)
            time.sleep(delay)
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
            declare_queue(self._channel, declare)
            self._declared.add(declare)
        # py-amqp directly: kombu's Producer adds nothing used here, only its
        # own per-message work. The channel is in confirm mode
        # (confirm_publish), so this returns once the broker has the message.
        headers = properties.pop("headers", None)
        if headers:
            properties["application_headers"] = headers
        message = amqp.Message(body.encode("utf-8") if isinstance(body, str) else body,
                               content_type=protocol.CONTENT_TYPE, content_encoding="utf-8",
                               **properties)
        self._channel.basic_publish(message, exchange=exchange, routing_key=routing_key,
                                    confirm_timeout=remaining())

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
