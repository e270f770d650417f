"""What RPCClient and RPCServer need from a message bus, and how to get one.

A transport moves opaque JSON texts (see ``protocol``): it never parses a
request, so the RabbitMQ and the in-memory transports cannot drift apart in
what they accept.
"""


class Incoming:
    """One received request, handed by a listener to the server.

    ``ack``, ``reject`` and ``reply`` may be called from any thread: the
    transport takes care of doing the actual work where it is safe.
    """

    body = b""
    message_id = None
    correlation_id = None
    reply_to = None
    redelivered = False
    user_id = None  # the sender's broker user, as the broker vouches for it (None: unknown)

    def ack(self):
        """The request is done; the broker forgets it."""
        raise NotImplementedError

    def reject(self):
        """The request can never be handled: dead-letter it (no requeue)."""
        raise NotImplementedError

    def requeue(self):
        """Not now: give it back to its queue, to be delivered again (to any
        server of the queue). Used after a delay for handlers that found a
        service they need unavailable."""
        raise NotImplementedError

    def reply(self, body):
        """Send a reply text to the caller (only when ``reply_to`` is set)."""
        raise NotImplementedError


class Listener:
    """Consumes one queue and hands each message to ``on_message``.

    ``on_message(incoming)`` runs on the listener's own thread and must not
    block. A message that is neither acked nor rejected when the listener
    ends goes back to the queue (redelivered to another server).
    """

    def start(self, on_message):
        raise NotImplementedError

    def stop(self):
        """Take no new messages; acks of work in progress still go through."""
        raise NotImplementedError

    def wait(self):
        """Flush pending acks, disconnect, return when the thread ended."""
        raise NotImplementedError


class Transport:
    url = None
    user = None  # this transport's broker user (who its messages say they are from)

    def send(self, target, body, *, wait_for_reply=False, timeout=None):
        """Publish ``body`` to ``target.queue``.

        Returns None for a cast; for a call the reply text, or raises
        ``TimeoutError`` after ``timeout`` seconds without one.
        Raises ``exception.ServiceUnavailable`` when the bus is unreachable.
        """
        raise NotImplementedError

    def listen(self, target, prefetch):
        """A Listener on ``target.queue`` with at most ``prefetch`` unacked messages."""
        raise NotImplementedError

    def cleanup(self):
        """Close connections and stop threads of this transport."""


def get_transport(url, **options):
    """``rabbit://user:pass@host:port/vhost`` -> KombuTransport (a new one per call;
    create one per process and share it). ``memory://[name]`` -> the
    process-global MemoryTransport for that url, so a client and a server in
    one process meet. ``options`` go to the KombuTransport constructor.
    """
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme == "memory":
        from common.rpc import memory_transport
        return memory_transport.get_shared(url)
    if scheme in ("rabbit", "amqp"):
        from common.rpc import kombu_transport
        return kombu_transport.KombuTransport(url, **options)
    raise ValueError("unsupported transport url %r: use rabbit:// or memory://"
                     % (url.split("@")[-1],))
