"""Consumer threads of the RabbitMQ transport.

Each consumer owns one connection that no other thread touches: py-amqp
channels are not thread-safe. Worker threads therefore never ack a message
themselves; they queue the ack (``call_soon``) and wake the consumer thread,
which sleeps in ``select`` on its AMQP socket and a wakeup pipe: an idle
consumer costs nothing (no polling), a queued ack runs at once. Replies are
published through the transport's locked publisher connection instead, so a
call's round trip does not wait for the consumer thread.

When the broker goes away the consumer reconnects - to the next host of a
failover list (``KombuTransport.connect``) - with a jittered backoff (by
default 0.5, 1, 2, 4, 5, 5 ... s, each cut by up to half at random, so that the
consumers of a whole cloud do not come back in step), and declares its
topology again. Acks queued for a channel that died are dropped: RabbitMQ
redelivers those messages anyway.
"""
import logging
import queue
import random
import select
import socket
import threading
import uuid

import amqp.exceptions
import kombu
import kombu.exceptions

from common import exception
from common.rpc import transport as base

LOG = logging.getLogger(__name__)

RECOVERABLE = (amqp.exceptions.AMQPError, amqp.exceptions.MessageNacked,
               kombu.exceptions.KombuError, OSError)
# An idle consumer still wakes this often, for AMQP heartbeats (sent and
# checked by heartbeat_check; the broker allows 2 heartbeat intervals).
_IDLE_WAKEUP = 1.0


def jittered(delay):
    """``delay`` cut by up to half at random: never longer than the plain
    backoff, but clients that lost the broker together spread out."""
    return delay * random.uniform(0.5, 1.0)


def queue_mismatch(exc, transport):
    """What to say when RabbitMQ refused to declare a queue as configured."""
    return ("a queue exists with other arguments than this daemon declares "
            "([oslo_messaging_rabbit] rabbit_quorum_queue = %s, rabbit_quorum_delivery_limit "
            "= %s); every daemon of a vhost must agree, and switching queue type means "
            "emptying and deleting the queues: %s"
            % (transport.quorum_queues, transport.delivery_limit,
               getattr(exc, "reply_text", None) or exc))


class _ConsumerLoop:
    """Connect, consume, drain, run queued operations; reconnect on failure."""

    idle_wakeup = _IDLE_WAKEUP  # s; read at each wait (tests may set it per consumer)

    def __init__(self, transport, queue_name):
        self.transport = transport
        self.queue_name = queue_name
        self.ready = threading.Event()  # set while consuming
        self._finish = threading.Event()
        self._ops = queue.SimpleQueue()
        # A socket pair rather than a pipe: a closed socket object refuses
        # a late write instead of writing to a reused file descriptor.
        self._wakeup_r, self._wakeup_w = socket.socketpair()
        self._wakeup_r.setblocking(False)
        self._wakeup_w.setblocking(False)
        self._channel = None
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="rpc-consumer-%s" % queue_name)

    def call_soon(self, fn):
        """Run ``fn()`` on the consumer thread (the only one using the channel)."""
        self._ops.put(fn)
        self.wake()

    def wake(self):
        """Interrupt the consumer thread's wait for the socket (any thread)."""
        try:
            self._wakeup_w.send(b"!")
        except BlockingIOError:
            pass  # the buffer is full: a wakeup is pending anyway
        except OSError:
            pass  # closed: the thread has ended

    def start(self):
        self._thread.start()

    def wait(self):
        """Flush queued operations, close the connection, end the thread."""
        self._finish.set()
        self.wake()
        if self._thread.is_alive():
            self._thread.join()
        self._wakeup_r.close()
        self._wakeup_w.close()

    # -- overridden by the two kinds of consumer ----------------------------
    def _consume(self, conn, channel):
        """Start consuming; may return another channel of ``conn`` to use."""
        raise NotImplementedError

    def _should_connect(self):
        return True

    def _before_drain(self):
        pass

    # -- the thread ------------------------------------------------------------
    def _run(self):
        first = delay = self.transport.reconnect_interval
        lost = False
        while not self._finish.is_set() and self._should_connect():
            conn, failed = None, True
            try:
                conn = self.transport.connect(consumer=True, name="consumer of %s" % self.queue_name)
                self._channel = conn.channel()
                self._channel = self._consume(conn, self._channel) or self._channel
                self.ready.set()
                if lost:
                    LOG.info("Reconnected to the message broker; consuming %s again",
                             self.queue_name)
                delay, lost = first, False
                self._loop(conn)
                failed = False
            except Exception as exc:
                self.ready.clear()
                if self._finish.is_set():
                    break
                if isinstance(exc, amqp.exceptions.PreconditionFailed):
                    LOG.error("Consumer of %s cannot declare its queue: %s; retrying in %.1f s",
                              self.queue_name, queue_mismatch(exc, self.transport), delay)
                elif isinstance(exc, RECOVERABLE):
                    LOG.warning("Consumer of %s lost the message broker (%s); "
                                "reconnecting in %.1f s", self.queue_name, exc, delay)
                else:
                    LOG.exception("Unexpected error in consumer of %s; reconnecting in %.1f s",
                                  self.queue_name, delay)
                lost = True
                self._finish.wait(jittered(delay))
                delay = min(delay * 2, self.transport.reconnect_max)
            finally:
                self._channel = None
                self.ready.clear()
                if conn is not None:
                    self._close(conn, graceful=not failed)

    def _loop(self, conn):
        sock = conn.connection.sock
        while True:
            self._run_ops()
            if self._finish.is_set():
                return
            self._before_drain()
            if self._wait_readable(sock):
                # Data is there: read what completes a message (a partial
                # frame stays buffered in py-amqp if the rest is late).
                try:
                    conn.drain_events(timeout=self.transport.poll_interval)
                except socket.timeout:
                    pass
            conn.heartbeat_check()

    def _wait_readable(self, sock):
        """Sleep until the socket has data (True), or a wakeup or the idle
        timeout (False)."""
        readable, _, _ = select.select([sock, self._wakeup_r], [], [], self.idle_wakeup)
        if self._wakeup_r in readable:
            try:
                while self._wakeup_r.recv(4096):
                    pass
            except BlockingIOError:
                pass
        return sock in readable

    def _run_ops(self):
        while True:
            try:
                fn = self._ops.get_nowait()
            except queue.Empty:
                return
            fn()

    @staticmethod
    def _close(conn, graceful):
        try:
            if graceful:
                conn.release()
            else:
                conn.collect()  # broken: drop the socket, no close handshake
        except Exception:
            LOG.debug("Error closing consumer connection", exc_info=True)


class _KombuIncoming(base.Incoming):
    def __init__(self, listener, message):
        self._listener = listener
        self._message = message
        props = message.properties
        self.body = message.body
        self.message_id = props.get("message_id")
        self.correlation_id = props.get("correlation_id")
        self.reply_to = props.get("reply_to")
        self.user_id = props.get("user_id")  # checked by RabbitMQ against the publisher
        self.reply_exchange = (message.headers or {}).get("reply_exchange")
        self.redelivered = bool(message.delivery_info.get("redelivered"))

    def ack(self):
        self._listener.call_soon(lambda: self._listener.settle(self._message, ack=True))

    def reject(self):
        self._listener.call_soon(lambda: self._listener.settle(self._message, ack=False))

    def requeue(self):
        self._listener.call_soon(lambda: self._listener.settle(self._message, ack=False,
                                                               requeue=True))

    def reply(self, body):
        if not self.reply_to or not self.correlation_id:
            return
        self._listener.transport.publish_reply(self.reply_to, self.correlation_id, body,
                                               exchange=self.reply_exchange)


class ServerListener(_ConsumerLoop, base.Listener):
    """Consumes a Target's queue for an RPCServer, ``prefetch`` unacked at most."""

    def __init__(self, transport, queue_name, prefetch, declare_queue):
        super().__init__(transport, queue_name)
        self.prefetch = prefetch
        self._declare_queue = declare_queue
        self._on_message = None
        self._consumer = None
        self._stopping = threading.Event()

    def start(self, on_message):
        self._on_message = on_message
        super().start()

    def stop(self):
        self._stopping.set()
        self.wake()  # cancel the consumer now, not at the next idle wakeup

    def _should_connect(self):
        return not self._stopping.is_set()

    def _consume(self, conn, channel):
        channel = self._declare_queue(conn, channel, self.queue_name)
        channel.basic_qos(prefetch_size=0, prefetch_count=self.prefetch, a_global=False)
        self._consumer = kombu.Consumer(channel, queues=[kombu.Queue(self.queue_name)],
                                        on_message=self._deliver, no_ack=False,
                                        auto_declare=False,
                                        on_decode_error=self._undecodable)
        self._consumer.consume()
        return channel

    def _before_drain(self):
        if self._stopping.is_set() and self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            consumer.cancel()  # no new deliveries; unacked ones stay ours

    def _deliver(self, message):
        try:
            self._on_message(_KombuIncoming(self, message))
        except Exception:
            # Raising here would break drain_events: reconnect, redelivery,
            # the same error, forever. A message we cannot take is dead-lettered.
            LOG.exception("Dead-lettering message %s on %s: it could not be dispatched",
                          message.properties.get("message_id"), self.queue_name)
            self.settle(message, ack=False)

    def _undecodable(self, message, exc):
        """kombu could not even build the message (e.g. an unknown
        ``compression`` header): dead-letter it; never let it loop."""
        LOG.error("Dead-lettering message %s on %s: undecodable (%s)",
                  message.properties.get("message_id"), self.queue_name,
                  exception.describe(exc))
        self.settle(message, ack=False)

    def settle(self, message, ack, requeue=False):
        """Ack, dead-letter or (``requeue``) give back ``message``; on the
        consumer thread only."""
        if message.channel is not self._channel:
            LOG.debug("Not settling a message of a lost connection; RabbitMQ redelivers it")
            return
        if message.acknowledged:
            return
        if ack:
            message.ack()
        else:
            message.reject(requeue=requeue)


class _Waiter:
    def __init__(self):
        self.event = threading.Event()
        self.body = None

    def wait(self, timeout):
        if not self.event.wait(timeout):
            raise TimeoutError()
        return self.body


class ReplyListener(_ConsumerLoop):
    """The transport's reply queue; wakes the caller waiting on a correlation id."""

    def __init__(self, transport):
        # Named after the broker user: a role account may only make and read
        # reply queues of its own name (README "Broker accounts").
        super().__init__(transport, "mininova.reply.%s.%s" % (transport.user or "anonymous",
                                                             uuid.uuid4().hex))
        self._waiters = {}
        self._lock = threading.Lock()

    def expect(self, correlation_id):
        waiter = _Waiter()
        with self._lock:
            self._waiters[correlation_id] = waiter
        return waiter

    def forget(self, correlation_id):
        with self._lock:
            self._waiters.pop(correlation_id, None)

    def _consume(self, conn, channel):
        # Exclusive: deleted by RabbitMQ with our connection; re-declared on reconnect.
        # Bound to the topic exchange too, where replies travel (see kombu_transport).
        channel = self.transport.topology.declare_exchange(conn, channel)
        channel.queue_declare(self.queue_name, durable=False, exclusive=True, auto_delete=True)
        channel.queue_bind(self.queue_name, self.transport.reply_exchange, self.queue_name)
        reply_queue = kombu.Queue(self.queue_name)
        consumer = kombu.Consumer(channel, queues=[reply_queue], on_message=self._deliver,
                                  no_ack=True, auto_declare=False,
                                  on_decode_error=self._undecodable)
        consumer.consume()
        return channel

    def _undecodable(self, message, exc):
        LOG.error("Dropping an undecodable reply on %s (%s)", self.queue_name,
                  exception.describe(exc))

    def _deliver(self, message):
        correlation_id = message.properties.get("correlation_id")
        with self._lock:
            waiter = self._waiters.get(correlation_id)
        if waiter is None:
            LOG.debug("Dropping reply %s: nobody waits for it (timed out?)", correlation_id)
            return
        waiter.body = message.body
        waiter.event.set()
