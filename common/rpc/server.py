"""RPCServer: consume a Target's queue and run each request on an endpoint.

Delivery is at-least-once: a message is acked only after its handler ended,
so a server that dies mid-handler gets its message redelivered to the next
one. Handlers must therefore be idempotent.
"""
import functools
import logging
import queue
import threading
import time

from common import context
from common import exception
from common.rpc import protocol

LOG = logging.getLogger(__name__)


class RPCServer:
    """Dispatch requests for ``target`` to ``endpoints`` on ``workers`` threads.

    A method is looked up on the endpoints in order; the first one with a
    public callable attribute of that name wins (``_private`` names never
    dispatch). It is called as ``endpoint.method(ctxt, **args)`` with the
    request context also made current (``common.context.get_current()``).
    """

    def __init__(self, transport, target, endpoints, workers=16):
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.transport = transport
        self.target = target
        self.endpoints = list(endpoints)
        self.workers = workers
        self._work = queue.SimpleQueue()  # callables; None tells a worker to exit
        self._threads = []
        self._listener = None
        self._stopping = False
        self._lock = threading.Lock()

    def start(self):
        """Declare the queue, start consuming and the worker threads."""
        with self._lock:
            if self._listener is not None:
                return
            self._stopping = False
            for i in range(self.workers):
                thread = threading.Thread(target=self._worker, daemon=True,
                                          name="rpc-%s-%d" % (self.target.queue, i))
                thread.start()
                self._threads.append(thread)
            self._listener = self.transport.listen(self.target, prefetch=self.workers)
            self._listener.start(self._on_message)
        LOG.info("RPC server consuming %s (version %s, %d workers)",
                 self.target.queue, self.target.version, self.workers)

    def stop(self):
        """Stop taking new messages; returns at once. Handlers in progress go on."""
        self._stopping = True
        if self._listener is not None:
            self._listener.stop()

    def wait(self, timeout=None):
        """Wait for the handlers in progress, ack them, close the connection.

        With ``timeout``, stop waiting after that many seconds: unfinished
        handlers keep running but their messages stay unacked and the broker
        hands them to another server once we disconnect.
        """
        self.stop()
        deadline = None if timeout is None else time.monotonic() + timeout
        for _ in self._threads:
            self._work.put(None)
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        self._threads = []
        if self._listener is not None:
            self._listener.wait()
            self._listener = None

    # -- on the listener's thread: decide quickly, never block --------------

    def _on_message(self, incoming):
        if self._stopping:
            # Left unacked on purpose: it goes back to the queue when we disconnect.
            return
        try:
            request = protocol.decode_request(incoming.body)
            if not protocol.version_compatible(self.target.version, request["version"]):
                raise protocol.UnsupportedVersion(
                    "message version %s not supported by server version %s"
                    % (request["version"], self.target.version))
            handler = self._find(request["method"])
        except protocol.MalformedMessage as exc:
            LOG.error("Dead-lettering message %s on %s: %s; body: %s",
                      incoming.message_id, self.target.queue, exc,
                      protocol.truncate(incoming.body))
            self._work.put(functools.partial(self._refuse, incoming, exc))
            return
        self._work.put(functools.partial(self._dispatch, incoming, request, handler))

    def _find(self, method):
        if not method.startswith("_"):
            for endpoint in self.endpoints:
                handler = getattr(endpoint, method, None)
                if callable(handler):
                    return handler
        raise protocol.NoSuchMethod("no method %r on %s" % (method, self.target.queue))

    # -- on worker threads ---------------------------------------------------

    def _worker(self):
        while True:
            job = self._work.get()
            if job is None:
                return
            try:
                job()
            except Exception:  # never let a worker die
                LOG.exception("Unexpected error in RPC worker of %s", self.target.queue)

    def _refuse(self, incoming, exc):
        """Tell a waiting caller at once (instead of a timeout), then dead-letter."""
        if incoming.reply_to:
            self._reply(incoming, protocol.encode_failure(exc))
        incoming.reject()

    def _dispatch(self, incoming, request, handler):
        method = request["method"]
        ctxt = context.RequestContext.from_dict(request["context"])
        token = context.set_current(ctxt)
        try:
            LOG.debug("Received %s %s on %s (request %s, message %s%s)",
                      "call" if incoming.reply_to else "cast", method,
                      self.target.queue, ctxt.request_id, incoming.message_id,
                      ", redelivered" if incoming.redelivered else "")
            try:
                result = handler(ctxt, **request["args"])
                reply = protocol.encode_result(result) if incoming.reply_to else None
            except Exception as exc:
                if not incoming.reply_to:
                    LOG.exception("Cast %s on %s failed", method, self.target.queue)
                    reply = None
                else:
                    if isinstance(exc, exception.MininovaException):
                        LOG.info("Call %s returns %s: %s", method, type(exc).__name__, exc)
                    else:
                        LOG.exception("Call %s on %s failed", method, self.target.queue)
                    reply = protocol.encode_failure(exc)
            if reply is not None:
                self._reply(incoming, reply)
            incoming.ack()
        finally:
            context.reset_current(token)

    def _reply(self, incoming, body):
        try:
            incoming.reply(body)
        except Exception as exc:  # the caller will time out; the work is done
            LOG.error("Could not send reply to %s: %s", incoming.reply_to, exc)
