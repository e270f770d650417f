"""Prometheus metrics of mininova, defined once for every daemon.

Each process exports its own registry, ``REGISTRY``: the API at ``GET
/metrics`` on its own port, the scheduler and compute daemons on an HTTP port
of their own (``[scheduler] metrics_port``, ``[compute] metrics_port``). Names
start with ``mininova_`` and carry their unit. The code that counts calls the
small helpers below in one line each, so the places that count stay readable;
a helper never raises into the work it measures.

Labels are bounded on purpose: route templates (``/v1/vms/<ref>``), RPC
topics and method names, outcomes, filter names; never ids, names or
projects. Gauges read from the database (heartbeat age, VMs by status) are
computed at scrape time by the scheduler: ``nova_conductor.db_metrics``.
"""
import datetime
import logging
import re
import time

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Histogram

LOG = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)
# process_resident_memory_bytes, process_cpu_seconds_total, open fds; python_info.
prometheus_client.ProcessCollector(registry=REGISTRY)
prometheus_client.PlatformCollector(registry=REGISTRY)

CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST

# -- API ----------------------------------------------------------------------

API_REQUESTS = Counter(
    "mininova_api_requests", "API requests answered, by method, route template and status.",
    ["method", "route", "status"], registry=REGISTRY)
API_REQUEST_DURATION = Histogram(
    "mininova_api_request_duration_seconds", "Time to answer an API request.",
    ["method", "route"], registry=REGISTRY,
    buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))

# -- RPC ----------------------------------------------------------------------

RPC_SENT = Counter(
    "mininova_rpc_messages_sent", "RPC requests sent, by topic, method and kind (cast/call).",
    ["topic", "method", "kind"], registry=REGISTRY)
RPC_RECEIVED = Counter(
    "mininova_rpc_messages_received",
    "RPC requests handled, by topic, method and kind (cast/call).",
    ["topic", "method", "kind"], registry=REGISTRY)
RPC_HANDLER_DURATION = Histogram(
    "mininova_rpc_handler_duration_seconds", "Time a handler ran for an RPC request.",
    ["topic", "method"], registry=REGISTRY)
RPC_CALL_DURATION = Histogram(
    "mininova_rpc_call_duration_seconds",
    "Round trip of an RPC call, as the caller waited for it (timeouts included).",
    ["topic", "method"], registry=REGISTRY)
RPC_DEAD_LETTERED = Counter(
    "mininova_rpc_messages_dead_lettered",
    "RPC messages rejected for good (malformed, a bug, or still failing after retries).",
    ["topic"], registry=REGISTRY)
RPC_CAST_RETRIES = Counter(
    "mininova_rpc_cast_retries",
    "Casts given back to the queue for a later try (their database or broker away).",
    ["topic", "method"], registry=REGISTRY)

# -- builds and scheduling ----------------------------------------------------

BUILD_OUTCOMES = ("success", "error", "rescheduled", "timed_out")
BUILDS = Counter(
    "mininova_builds", "Builds by outcome: success, error (the VM went to ERROR), "
    "rescheduled (another host is tried) or timed_out (the scheduler's watchdog ended a "
    "build nobody finished within [compute] build_timeout).",
    ["outcome"], registry=REGISTRY)
BUILD_DURATION = Histogram(
    "mininova_build_duration_seconds",
    "Time a compute host spent on a build, from its first step (image fetch) to its last "
    "(guest running, or the failure), by outcome.",
    ["outcome"], registry=REGISTRY,
    buckets=(.25, .5, 1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600))
SCHEDULING_FAILURES = Counter(
    "mininova_scheduling_failures",
    "VMs the scheduler could not place, by reason: the filter that removed the last "
    "hosts, 'no hosts', 'claim lost' or 'image unavailable'.",
    ["reason"], registry=REGISTRY)
SCHEDULING_DURATION = Histogram(
    "mininova_scheduling_duration_seconds",
    "Time to filter, weigh and claim a host for a VM that was placed.",
    registry=REGISTRY, buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5))

for _outcome in BUILD_OUTCOMES:  # present (at 0) from the start, so rate() works
    BUILDS.labels(_outcome)
    BUILD_DURATION.labels(_outcome)


def _safely(fn):
    """Metrics are best effort: a bug here must not fail an API request or a build."""
    def wrapper(*args, **kwargs):
        try:
            fn(*args, **kwargs)
        except Exception:
            LOG.exception("could not update metric in %s", fn.__name__)
    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


@_safely
def api_request(method, url_rule, status, started):
    """One API request answered; ``url_rule`` is Flask's (None: no route matched)."""
    route = url_rule.rule if url_rule is not None else "unmatched"
    API_REQUESTS.labels(method, route, str(status)).inc()
    API_REQUEST_DURATION.labels(method, route).observe(time.monotonic() - started)


@_safely
def rpc_sent(target, method, kind):
    RPC_SENT.labels(target.topic, method, kind).inc()


@_safely
def rpc_call_done(target, method, started):
    RPC_CALL_DURATION.labels(target.topic, method).observe(time.monotonic() - started)


@_safely
def rpc_handled(target, method, kind, started):
    RPC_RECEIVED.labels(target.topic, method, kind).inc()
    RPC_HANDLER_DURATION.labels(target.topic, method).observe(time.monotonic() - started)


@_safely
def rpc_dead_lettered(target):
    RPC_DEAD_LETTERED.labels(target.topic).inc()


@_safely
def rpc_cast_retried(target, method):
    RPC_CAST_RETRIES.labels(target.topic, method).inc()


def _parse_time(value):
    """An ISO 8601 time of a build step (naive UTC or with 'Z')."""
    if isinstance(value, datetime.datetime):
        return value.replace(tzinfo=None)
    return datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00")).replace(
        tzinfo=None)


def build_duration(events):
    """Seconds from the first step's start to the last step's finish of a
    build's timed steps (compute's clock only: no skew between hosts); None
    without steps."""
    starts = [_parse_time(e["start_time"]) for e in events if e.get("start_time")]
    finishes = [_parse_time(e["finish_time"]) for e in events if e.get("finish_time")]
    if not starts or not finishes:
        return None
    return max(0.0, (max(finishes) - min(starts)).total_seconds())


@_safely
def build_finished(outcome, events=()):
    """A build ended: ``outcome`` one of BUILD_OUTCOMES; ``events`` its steps
    (for the duration; none for a timed-out build)."""
    BUILDS.labels(outcome).inc()
    seconds = build_duration(events)
    if seconds is not None:
        BUILD_DURATION.labels(outcome).observe(seconds)


@_safely
def scheduled(started):
    """A VM was placed; ``started`` (monotonic) when filtering began."""
    SCHEDULING_DURATION.observe(time.monotonic() - started)


@_safely
def scheduling_failed(reason):
    SCHEDULING_FAILURES.labels(reason).inc()


_FILTER_NOTE = re.compile(r"\b(\w+Filter) removed (\d+)")


def no_valid_host_reason(hosts, candidates, explanation):
    """Why nothing was placed: 'no hosts' (none known), the filter that
    removed the last hosts (``filter_hosts`` stops there, so it is the last
    one its ``explanation`` names), or 'claim lost' (some hosts passed the
    filters but concurrent requests took their room first)."""
    if not hosts:
        return "no hosts"
    removed = [(name, int(count)) for name, count in _FILTER_NOTE.findall(explanation)]
    if candidates or sum(count for _, count in removed) < len(hosts):
        return "claim lost"
    return removed[-1][0]


@_safely
def no_valid_host(hosts, candidates, explanation):
    SCHEDULING_FAILURES.labels(no_valid_host_reason(hosts, candidates, explanation)).inc()


# -- exposition ---------------------------------------------------------------

def render():
    """The registry in Prometheus' text format: (body bytes, content type)."""
    return prometheus_client.generate_latest(REGISTRY), CONTENT_TYPE


def serve(host, port, what):
    """Serve ``/metrics`` (any path, in fact) on ``host:port`` in a daemon
    thread; port 0: disabled. A port taken is logged, not fatal: a daemon
    keeps working without its metrics (e.g. a second compute on one machine
    left on the default port). Returns the server, or None."""
    if not port:
        LOG.info("%s: metrics endpoint disabled (metrics_port = 0)", what)
        return None
    try:
        server, _thread = prometheus_client.start_http_server(port, addr=host,
                                                              registry=REGISTRY)
    except OSError as e:
        LOG.error("%s: cannot serve metrics on %s:%d: %s; going on without", what, host,
                  port, e)
        return None
    LOG.info("%s: Prometheus metrics on http://%s:%d/metrics", what, host, port)
    return server
