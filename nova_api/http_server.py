"""The API's HTTP server: waitress, bounded so that no client can stall the others.

waitress's model: one thread runs an event loop that accepts connections and
reads each request whole (headers and body; a big body spills to a temporary
file) before handing it to one of ``[api] threads`` worker threads; the
worker writes the response into a buffer that the loop sends. An idle, slow
or stalled client therefore holds a connection slot and a file descriptor,
never a worker thread. (A worker waits for a slow reader only past 16 MB of
unsent response: no JSON answer of the API is that large, and image files
are handed to the loop as files, not written by the worker.)

The slot count is what bounds the server: waitress stops accepting once
``connection_limit`` connections are open, and every new client then waits
in the kernel's backlog until an idle one times out. Here the limit is
``[api] connection_limit``, the process's file-descriptor
limit is raised to fit it, poll() replaces select() (which fails on
descriptors above 1023), and what waitress leaves unbounded is bounded:

- a request must arrive at a useful pace: its headers within
  ``client_header_timeout`` seconds of its first byte (a client dribbling
  them, slowloris, would otherwise hold its slot for ever, since every byte
  resets waitress's idle timer), its body within ``client_body_timeout`` plus
  one second per ``client_body_min_rate`` bytes received; past that the
  connection is closed;
- a body is buffered only up to a size that depends on the request
  (``body_cap``): a never-ending body is answered 413 (in the API's error
  format) instead of filling the disk.
"""
import json
import logging
import resource
import time

from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import BaseWSGIServer, create_server as waitress_server
from waitress.utilities import RequestEntityTooLarge

from common import exception

LOG = logging.getLogger(__name__)

# A connection may use up to 3 descriptors (its socket, a spilled request
# body, a spilled response); these are for everything else of the process
# (log files, database and broker connections, image files being sent).
FDS_PER_CONNECTION = 3
RESERVED_FDS = 256


class RequestLimits:
    """Deadlines and body sizes for requests being received (not served)."""

    def __init__(self, header_timeout, body_timeout, body_min_rate, body_cap):
        """``body_cap(method, path)``: the most body bytes to buffer for that
        request; ``body_min_rate`` 0: no allowance per byte received."""
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.body_min_rate = body_min_rate
        self.body_cap = body_cap

    def overdue(self, parser, now):
        """Why ``parser``'s request, still arriving at monotonic ``now``, is
        too late; None when it is not."""
        if parser.body_started is None:
            if now - parser.started > self.header_timeout:
                return "headers not complete after %d s" % self.header_timeout
            return None
        allowed = self.body_timeout
        if self.body_min_rate:
            allowed += parser.body_bytes_received / self.body_min_rate
        if now - parser.body_started > allowed:
            return "body too slow (%d bytes in %.0f s)" % (parser.body_bytes_received,
                                                            now - parser.body_started)
        return None


class PayloadTooLarge(RequestEntityTooLarge):
    """waitress's 413, in the API's error format (nova_api.errors)."""

    def __init__(self, limit):
        super().__init__(exception.PayloadTooLarge(limit=limit).message)

    def to_response(self, ident=None):
        body = json.dumps({"error": {"code": self.code, "message": self.body}}).encode()
        return "%d %s" % (self.code, self.reason), [("Content-Type", "application/json")], body


class _Parser(HTTPRequestParser):
    """waitress's parser, plus when the request began and a body cap per request."""
    limits = None  # RequestLimits (set on the subclass _channel_class makes)

    def __init__(self, adj):
        super().__init__(adj)
        self.started = time.monotonic()   # its first byte (or blank line) arrived
        self.body_started = None          # its headers ended, with a body to come
        self.body_cap = None

    def received(self, data):
        consumed = super().received(data)
        if self.headers_finished and not self.completed and self.error is None:
            if self.body_started is None:
                self.body_started = time.monotonic()
                self.body_cap = self.limits.body_cap(self.command, self.path)
            # A declared length is refused before a byte of it is buffered;
            # a chunked body once its decoded bytes pass the cap.
            if max(self.content_length, len(self.body_rcv)) > self.body_cap:
                self.error = PayloadTooLarge(self.body_cap)
                self.completed = True
        return consumed


class _Channel(HTTPChannel):
    """waitress's connection, closed when the request it receives is overdue."""
    limits = None

    def readable(self):
        # Called by the event loop at least once a second for every
        # connection; a request being served is not the client's fault.
        request = self.request
        if request is not None and not self.requests and not self.will_close:
            why = self.limits.overdue(request, time.monotonic())
            if why is not None:
                LOG.info("closing the connection from %s: %s", self.addr[0] if self.addr
                         else "?", why)
                self.will_close = True  # writable() now; handle_write closes it
        return super().readable()


def _channel_class(limits):
    parser = type("Parser", (_Parser,), {"limits": limits})
    return type("Channel", (_Channel,), {"limits": limits, "parser_class": parser})


def fit_fd_limit(connection_limit, getrlimit=resource.getrlimit,
                 setrlimit=resource.setrlimit):
    """Raise the soft file-descriptor limit (up to the hard one) to fit
    ``connection_limit`` connections; the number of connections that fit.
    Accepting more than fit would make accept() fail in a busy loop."""
    soft, hard = getrlimit(resource.RLIMIT_NOFILE)
    wanted = FDS_PER_CONNECTION * connection_limit + RESERVED_FDS
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        if new > soft:
            setrlimit(resource.RLIMIT_NOFILE, (new, hard))
            soft = new
    if soft != resource.RLIM_INFINITY and soft < wanted:
        fitting = max(1, (soft - RESERVED_FDS) // FDS_PER_CONNECTION)
        LOG.warning("[api] connection_limit %d needs %d file descriptors, the hard limit "
                    "(ulimit -Hn) is %d: serving at most %d connections", connection_limit,
                    wanted, soft, fitting)
        return fitting
    return connection_limit


def create_server(app, api_conf, body_cap, sockets=None):
    """A waitress server for ``app`` configured by ``[api]`` (call .run());
    ``sockets``: listening sockets already bound (in place of [api] listen
    and port), as [api] workers share theirs."""
    opts = api_conf
    limits = RequestLimits(opts.client_header_timeout, opts.client_body_timeout,
                           opts.client_body_min_rate, body_cap)
    where = ({"sockets": sockets} if sockets
             else {"host": opts.listen, "port": opts.port})
    dispatchers = {}
    server = waitress_server(
        app, map=dispatchers, **where, threads=opts.threads,
        connection_limit=fit_fd_limit(opts.connection_limit),
        channel_timeout=opts.channel_timeout, cleanup_interval=opts.cleanup_interval,
        backlog=opts.backlog, recv_bytes=opts.recv_bytes,
        # _Parser enforces body_cap; waitress's own cap (which counts the
        # chunks' framing too) must not be lower.
        max_request_body_size=2 * max(opts.max_image_bytes, opts.max_body_bytes),
        asyncore_use_poll=True, ident="mininova", clear_untrusted_proxy_headers=True)
    channel = _channel_class(limits)
    for dispatcher in list(dispatchers.values()):  # one listening server per address
        if isinstance(dispatcher, BaseWSGIServer):
            dispatcher.channel_class = channel
    return server
