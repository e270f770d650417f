"""RPCClient: cast (fire and forget) and call (wait for the reply)."""
import logging
import time

from common import exception, metrics
from common.rpc import protocol

LOG = logging.getLogger(__name__)


class RPCClient:
    """Sends requests to ``target``; cheap to create and thread-safe.

    All state that matters (connections, reply queue) lives in the transport,
    so make one client per target, or ``prepare()`` a copy per host.

    Messages are stamped with ``target.version``. ``version_cap`` ("X.Y";
    None or "" for none) is the newest version the servers of the target are
    known to understand (``[upgrade_levels]``, during a rolling upgrade): the
    caller asks ``can_send_version`` which form of a message to send, and a
    message above the cap is never sent.
    """

    def __init__(self, transport, target, timeout=30, version_cap=None):
        if version_cap:
            protocol.parse_version(version_cap)  # ValueError if not "X.Y"
        self.transport = transport
        self.target = target
        self.timeout = timeout
        self.version_cap = version_cap or None

    def prepare(self, server=None, timeout=None, version=None):
        """A copy with overrides; ``None`` keeps this client's value. The cap stays."""
        changes = {}
        if server is not None:
            changes["server"] = server
        if version is not None:
            changes["version"] = version
        target = self.target.replace(**changes) if changes else self.target
        return RPCClient(self.transport, target,
                         self.timeout if timeout is None else timeout, self.version_cap)

    def can_send_version(self, version):
        """True if a message of ``version`` is within the cap (always, without one)."""
        return self.version_cap is None or protocol.version_compatible(self.version_cap,
                                                                        version)

    def _encode(self, ctxt, method, kwargs):
        if not self.can_send_version(self.target.version):
            raise exception.RPCVersionCapError(version=self.target.version,
                                               version_cap=self.version_cap)
        return protocol.encode_request(ctxt, method, kwargs, self.target.version)

    def cast(self, ctxt, method, /, **kwargs):
        """Queue ``method(ctxt, **kwargs)`` on the target and return at once.

        Raises TypeError for arguments that are not plain JSON, and
        ServiceUnavailable if the broker cannot take the message within the
        transport's publish retry time, and RPCVersionCapError for a message
        above the version cap. Once this returns the message is persisted by
        the broker (publisher confirms).
        """
        body = self._encode(ctxt, method, kwargs)
        LOG.debug("cast %s to %s (request %s)", method, self.target.queue, ctxt.request_id)
        self.transport.send(self.target, body)
        metrics.rpc_sent(self.target, method, "cast")

    def call(self, ctxt, method, /, **kwargs):
        """Run ``method`` remotely and return its result.

        Remote MininovaExceptions are re-raised with their class; other
        remote errors as RemoteError; no reply within ``timeout`` seconds as
        MessagingTimeout (the request may still run later: handlers must be
        idempotent).
        """
        body = self._encode(ctxt, method, kwargs)
        LOG.debug("call %s on %s (request %s)", method, self.target.queue, ctxt.request_id)
        metrics.rpc_sent(self.target, method, "call")
        started = time.monotonic()
        try:
            reply = self.transport.send(self.target, body, wait_for_reply=True,
                                        timeout=self.timeout)
        except TimeoutError:
            raise exception.MessagingTimeout(method=method, topic=self.target.queue,
                                             timeout=self.timeout) from None
        finally:
            metrics.rpc_call_done(self.target, method, started)
        return protocol.decode_reply(reply)
