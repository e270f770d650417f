"""``GET/HEAD /healthcheck`` for a load balancer (oslo.middleware's healthcheck):
200 "OK" while this API can reach the database and the message broker, 503
with a short reason naming what it cannot reach otherwise.

A load balancer polls every API every second or two, so an answer must cost
nothing and never hang: the last verdict is kept ``cache_seconds``; a probe
runs on a thread of its own and is given ``timeout`` seconds, after which it
counts as failed ("no answer within ...") while it goes on ending by its own
short timeouts; a probe still running is not started twice. The probes keep
one connection each (the database's own small pool, one AMQP connection), so
a poll costs a ``SELECT 1`` and a channel opened and closed, not a login.

``disable_file``: while that file exists the answer is 503 "disabled by
file" whatever the probes say (oslo's disable_by_file): an operator drains
an API from its load balancer before stopping it."""
import logging
import os
import threading
import time

import kombu
import sqlalchemy as sa

from common.rpc import kombu_transport

LOG = logging.getLogger(__name__)


class Probe:
    """One thing an API needs; ``name`` shows in the reason of a 503."""
    name = "?"

    def check(self):
        """Return if reachable; raise (anything) otherwise."""
        raise NotImplementedError

    def close(self):
        """Drop what the probe holds open."""


class DatabaseProbe(Probe):
    """``SELECT 1`` on a pool of one connection of its own, so that requests
    holding all of the API's connections do not make a busy API look dead."""
    name = "database"

    def __init__(self, url, timeout=2.0):
        kwargs = {}
        if url.startswith("postgresql"):
            # connect_timeout bounds a connect to an address that does not
            # answer; the probe thread's deadline bounds the rest.
            kwargs = {"pool_size": 1, "max_overflow": 0, "pool_timeout": timeout,
                      "connect_args": {"connect_timeout": max(1, int(timeout))}}
        self.engine = sa.create_engine(url, **kwargs)

    def check(self):
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except Exception:
            self.engine.dispose()  # a dead pooled connection: connect anew next time
            raise

    def close(self):
        self.engine.dispose()


class BrokerProbe(Probe):
    """A channel opened and closed on an AMQP connection kept between probes
    (a round trip to the broker); a failover list is reachable when one of
    its brokers is, as the daemons only need one."""
    name = "message broker"

    def __init__(self, transport_url, timeout=2.0):
        self.urls = kombu_transport.parse_url(transport_url)
        self.timeout = timeout
        self._conn = None  # kombu.Connection, connected
        self._amqp = None  # its py-amqp connection: used directly, kombu would reconnect
        self._next = 0

    def check(self):
        if self._amqp is not None:
            try:
                self._amqp.channel().close()
                return
            except Exception:
                self.close()  # connect again below, from the broker that answered last
        errors = []
        for attempt in range(len(self.urls)):
            index = (self._next + attempt) % len(self.urls)
            conn = kombu.Connection(
                self.urls[index], connect_timeout=self.timeout, heartbeat=0,
                transport_options={"read_timeout": self.timeout,
                                   "write_timeout": self.timeout,
                                   "client_properties": {"connection_name":
                                                         "mininova-api healthcheck (pid %d)"
                                                         % os.getpid()}})
            try:
                conn.ensure_connection(max_retries=0)
                raw = conn.connection
                raw.channel().close()
            except Exception as e:
                conn.collect()
                errors.append(e)
                continue
            self._conn, self._amqp, self._next = conn, raw, index
            return
        raise errors[-1]

    def close(self):
        conn, self._conn, self._amqp = self._conn, None, None
        if conn is not None:
            try:
                conn.collect()
            except Exception:
                pass


class _Run:
    """One probe's check on its own thread."""

    def __init__(self, probe):
        self.probe = probe
        self.error = None
        self.started = time.monotonic()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True,
                                       name="healthcheck-" + probe.name.replace(" ", "-"))
        self.thread.start()

    def _run(self):
        try:
            self.probe.check()
        except Exception as e:
            self.error = e
        finally:
            self.done.set()


def _detail(exc):
    """For the log only: the answer is read without a token and names no
    host, user or database."""
    return ((str(exc).strip().splitlines() or [""])[0] or type(exc).__name__)[:300]


class HealthCheck:
    def __init__(self, probes, cache_seconds=1.0, timeout=2.0, disable_file="",
                 clock=time.monotonic):
        self.probes = list(probes)
        self.cache_seconds = cache_seconds
        self.timeout = timeout
        self.disable_file = disable_file
        self.clock = clock
        self._lock = threading.Lock()
        self._verdict = None  # (taken at, reasons)
        self._running = {}    # probe -> _Run not finished when last waited for

    def reasons(self):
        """What this API cannot reach: [] when healthy."""
        if self.disable_file and os.path.exists(self.disable_file):
            return ["disabled by file"]
        with self._lock:  # one poll probes; the others wait for its verdict
            now = self.clock()
            if self._verdict is not None and now - self._verdict[0] < self.cache_seconds:
                return self._verdict[1]
            found = self._probe_all()
            reasons = [reason for reason, _ in found]
            before = self._verdict[1] if self._verdict is not None else []
            self._verdict = (self.clock(), reasons)
        if reasons != before:  # logged once per change, not once per poll
            if reasons:
                LOG.warning("healthcheck failing: %s", "; ".join(d for _, d in found))
            else:
                LOG.info("healthcheck: database and message broker reachable again")
        return reasons

    def _probe_all(self):
        runs = {}
        for probe in self.probes:
            run = self._running.get(probe)
            runs[probe] = run if run is not None and not run.done.is_set() else _Run(probe)
        reasons = []
        for probe, run in runs.items():
            # A check still running from an earlier poll is not waited for again.
            if not run.done.wait(max(0.0, run.started + self.timeout - time.monotonic())):
                self._running[probe] = run
                reason = "%s unreachable: no answer within %.1f s" % (probe.name,
                                                                      self.timeout)
                reasons.append((reason, reason))
                continue
            self._running.pop(probe, None)
            if run.error is not None:
                reasons.append(("%s unreachable (%s)" % (probe.name, type(run.error).__name__),
                                "%s unreachable: %s" % (probe.name, _detail(run.error))))
        return reasons

    def close(self):
        for probe in self.probes:
            probe.close()
