"""RPCServer: consume a Target's queue and run each request on an endpoint.

Delivery is at-least-once: a message is acked only after its handler ended,
so a server that dies mid-handler gets its message redelivered to the next
one. Handlers must therefore be idempotent.

What happens to a message whose handler did not succeed:

- it cannot be dispatched (not JSON, bad fields, a method that is no
  declared entry point, wrong version, arguments that do not fit the
  method): dead-lettered at once, and a waiting caller is told;
- a call: the failure goes back to the caller (who decides), the message is
  acked;
- a cast whose handler raised ``ServiceUnavailable`` (its database or the
  broker away): given back to the queue after a delay (1, 2, 4 ... up to
  ``retry_max_delay`` s), so that the work is done once the service is back
  instead of being lost; after ``retry_limit`` tries it is dead-lettered
  (a poison message never loops forever);
- a cast whose handler raised another ``MininovaException``: an expected
  outcome the handler reports itself (a VM in ERROR ...): logged and acked;
- a cast whose handler raised anything else (a bug, a message that fits the
  signature but not the handler): logged with its traceback and dead-lettered,
  for a person to look at.
"""
import contextlib
import contextvars
import functools
import hashlib
import inspect
import logging
import queue
import threading
import time

from common import context
from common import exception
from common import metrics
from common.rpc import policy
from common.rpc import protocol

LOG = logging.getLogger(__name__)

# Whether the message the current handler runs for is on its first delivery.
# Outside a handler (a direct call, a periodic task) it is unknown: False.
_FIRST_DELIVERY = contextvars.ContextVar("rpc_first_delivery", default=False)


def first_delivery():
    """True only inside a handler whose message was never delivered before
    (no broker redelivery, no requeue after ServiceUnavailable): a handler
    may then trust what its sender knew when it sent the message."""
    return _FIRST_DELIVERY.get()


@contextlib.contextmanager
def delivery(redelivered):
    """The delivery ``first_delivery()`` reports inside (tests use it too)."""
    token = _FIRST_DELIVERY.set(not redelivered)
    try:
        yield
    finally:
        _FIRST_DELIVERY.reset(token)


class RPCServer:
    """Dispatch requests for ``target`` to ``endpoints`` on ``workers`` threads.

    Only declared entry points are callable: each endpoint names them in
    ``RPC_METHODS`` (a set of its public method names), so that a helper or
    a periodic task that happens to be public is never a remote call. A
    method goes to the first endpoint that declares it, as
    ``endpoint.method(ctxt, **args)`` with the request context also made
    current (``common.context.get_current()``).

    Each endpoint also declares ``RPC_POLICY`` (``common.rpc.policy``): which
    roles may call each entry point. A message whose sender (its broker
    user, checked by RabbitMQ) may not send it is refused like a malformed
    one: the caller gets RPCForbidden, the message is dead-lettered.
    """

    def __init__(self, transport, target, endpoints, workers=16, retry_delay=1.0,
                 retry_max_delay=15.0, retry_limit=20):
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.transport = transport
        self.target = target
        self.endpoints = list(endpoints)
        self._entry_points = {}  # method name -> the first endpoint declaring it
        self._rules = {}         # method name -> its policy.Rule (None: none declared)
        for endpoint in reversed(self.endpoints):
            methods = _declared(endpoint)
            rules = policy.declared(endpoint, methods) or {}
            self._entry_points.update(dict.fromkeys(methods, endpoint))
            self._rules.update({method: rules.get(method) for method in methods})
        # A server running with a role account refuses senders without one.
        self._strict = policy.sender_of(getattr(transport, "user", None)) is not None
        self.workers = workers
        self.retry_delay = retry_delay
        self.retry_max_delay = retry_max_delay
        self.retry_limit = retry_limit
        self._work = queue.SimpleQueue()  # callables; None tells a worker to exit
        self._threads = []
        self._listener = None
        self._stopping = False
        self._lock = threading.Lock()
        self._signatures = {}
        self._retries = {}    # message key -> casts tried (ServiceUnavailable)
        self._timers = set()  # pending delayed requeues
        self._timers_lock = threading.Lock()

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
        """Stop taking new messages; returns at once. Handlers in progress go on.
        Messages waiting for a delayed retry stay unacked: they go back to the
        queue when the connection closes."""
        self._stopping = True
        with self._timers_lock:
            timers, self._timers = self._timers, set()
        for timer in timers:
            timer.cancel()
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
                raise exception.UnsupportedVersion(
                    version=request["version"], method=request["method"],
                    queue=self.target.queue, server_version=self.target.version)
            handler = self._find(request["method"])
            policy.check(self._rules.get(request["method"]), request["method"],
                         policy.sender_of(getattr(incoming, "user_id", None)),
                         request["args"], self._strict)
            self._check_arguments(request["method"], handler, request["args"])
        except Exception as exc:  # MalformedMessage, or a bug: never let it loop
            if not isinstance(exc, exception.MalformedMessage):
                LOG.exception("Unexpected error decoding message %s on %s",
                              incoming.message_id, self.target.queue)
            LOG.error("Dead-lettering message %s on %s: %s: %s; body: %s",
                      incoming.message_id, self.target.queue, type(exc).__name__, exc,
                      protocol.truncate(incoming.body))
            self._work.put(functools.partial(self._refuse, incoming, exc))
            return
        self._work.put(functools.partial(self._dispatch, incoming, request, handler))

    def _check_arguments(self, method, handler, args):
        """MalformedMessage unless ``handler(ctxt, **args)`` binds."""
        signature = self._signatures.get(method)
        if signature is None:
            try:
                signature = inspect.signature(handler)
            except (TypeError, ValueError):
                return  # not introspectable: let the call itself decide
            self._signatures[method] = signature
        try:
            signature.bind(None, **args)
        except TypeError as exc:
            raise exception.MalformedMessage("arguments do not fit %s(): %s"
                                             % (method, exc)) from None

    def _find(self, method):
        endpoint = self._entry_points.get(method)
        handler = None if endpoint is None else getattr(endpoint, method, None)
        if not callable(handler):
            raise exception.NoSuchMethod("no method %r on %s: not one of its RPC entry points"
                                         % (method, self.target.queue))
        return handler

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
        metrics.rpc_dead_lettered(self.target)

    def _dispatch(self, incoming, request, handler):
        method = request["method"]
        started = time.monotonic()
        ctxt = context.RequestContext.from_dict(request["context"])
        token = context.set_current(ctxt)
        try:
            LOG.debug("Received %s %s on %s (request %s, message %s%s)",
                      "call" if incoming.reply_to else "cast", method,
                      self.target.queue, ctxt.request_id, incoming.message_id,
                      ", redelivered" if incoming.redelivered else "")
            try:
                with delivery(incoming.redelivered):
                    result = handler(ctxt, **request["args"])
                reply = protocol.encode_result(result) if incoming.reply_to else None
            except Exception as exc:
                if not incoming.reply_to:
                    self._cast_failed(incoming, method, exc)
                    return
                if isinstance(exc, exception.MininovaException):
                    LOG.info("Call %s returns %s: %s", method, type(exc).__name__, exc)
                else:
                    LOG.exception("Call %s on %s failed", method, self.target.queue)
                reply = protocol.encode_failure(exc)
            if reply is not None:
                self._reply(incoming, reply)
            self._forget_retries(incoming)
            incoming.ack()
        finally:
            context.reset_current(token)
            metrics.rpc_handled(self.target, method, "call" if incoming.reply_to else "cast",
                                started)

    # -- casts that did not succeed ------------------------------------------

    def _cast_failed(self, incoming, method, exc):
        if isinstance(exc, exception.ServiceUnavailable):
            self._retry_later(incoming, method, exc)
            return
        self._forget_retries(incoming)
        if isinstance(exc, exception.MininovaException):
            LOG.warning("Cast %s on %s ended with %s: %s", method, self.target.queue,
                        type(exc).__name__, exc)
            incoming.ack()
            return
        LOG.exception("Cast %s on %s failed; dead-lettering message %s", method,
                      self.target.queue, incoming.message_id)
        incoming.reject()
        metrics.rpc_dead_lettered(self.target)

    @staticmethod
    def _key(incoming):
        if incoming.message_id:
            return incoming.message_id
        body = incoming.body if isinstance(incoming.body, bytes) else \
            str(incoming.body).encode("utf-8", "replace")
        return hashlib.sha256(body).hexdigest()

    def _forget_retries(self, incoming):
        if self._retries:
            with self._lock:
                self._retries.pop(self._key(incoming), None)

    def _retry_later(self, incoming, method, exc):
        key = self._key(incoming)
        with self._lock:
            tries = self._retries.get(key, 0) + 1
            if tries > self.retry_limit:
                self._retries.pop(key, None)
            else:
                if len(self._retries) > 10000:  # keys of messages another server took
                    self._retries.clear()
                self._retries[key] = tries
        if tries > self.retry_limit:
            LOG.error("Cast %s on %s still failing after %d tries (%s); dead-lettering "
                      "message %s", method, self.target.queue, self.retry_limit, exc,
                      incoming.message_id)
            incoming.reject()
            metrics.rpc_dead_lettered(self.target)
            return
        delay = min(self.retry_delay * 2 ** (tries - 1), self.retry_max_delay)
        metrics.rpc_cast_retried(self.target, method)
        LOG.warning("Cast %s on %s: %s; retrying in %.0f s (try %d of %d)", method,
                    self.target.queue, exc, delay, tries, self.retry_limit)
        timer = threading.Timer(delay, lambda: self._requeue(incoming, timer))
        timer.daemon = True
        with self._timers_lock:
            if self._stopping:
                return  # left unacked: back to the queue when we disconnect
            self._timers.add(timer)
        timer.start()

    def _requeue(self, incoming, timer):
        with self._timers_lock:
            if timer not in self._timers:
                return  # cancelled by stop(): left for the broker to redeliver
            self._timers.discard(timer)
        incoming.requeue()

    def _reply(self, incoming, body):
        try:
            incoming.reply(body)
        except Exception as exc:  # the caller will time out; the work is done
            LOG.error("Could not send reply to %s: %s", incoming.reply_to, exc)


def _declared(endpoint):
    """The entry points ``endpoint`` declares; TypeError at start-up, rather
    than refused messages later, if it declares none or one it lacks."""
    declared = getattr(endpoint, "RPC_METHODS", None)
    name = type(endpoint).__name__
    if not isinstance(declared, (set, frozenset)):
        raise TypeError("RPC endpoint %s must declare RPC_METHODS, the set of the methods "
                        "other daemons may call" % name)
    for method in declared:
        if (not isinstance(method, str) or method.startswith("_")
                or not callable(getattr(endpoint, method, None))):
            raise TypeError("%s.RPC_METHODS names %r, which is not a public method of it"
                            % (name, method))
    return declared
