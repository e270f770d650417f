"""Prometheus metrics: the module's helpers, /metrics on the API, counters
that move on a request, an RPC message, a build and a scheduling failure,
the scheduler's database gauges and the daemons' HTTP endpoint."""
import datetime
import socket
import urllib.error
import urllib.request
import uuid

import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from common import context, metrics, rpc, states
from common.db import allocations
from common.db import api as db_api
from common.db.allocations import Resources
from common.db.models import Instance, utcnow
from nova_api.app import create_app
from nova_conductor.manager import ConductorManager
from nova_conductor.db_metrics import DatabaseCollector
from tests.builds import Builds
from nova_conductor.watchdog import Watchdog
from tests.unit.conftest import token_for
from tests.unit.test_scheduler import CTXT, RATIOS, add_host, add_vm
from mininova_lab.waiting import wait_for


def value(name, **labels):
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def scrape(text):
    """{(sample name, frozenset(labels)): value} of a text exposition."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


# -- the module ---------------------------------------------------------------

def step(start, finish):
    return {"event": "x", "host": "h", "start_time": start, "finish_time": finish,
            "result": "success", "details": None}


def test_build_duration_spans_the_steps_on_compute_clock():
    events = [step("2024-01-01T00:00:00.000000Z", "2024-01-01T00:00:02.500000Z"),
              step("2024-01-01T00:00:02.500000Z", "2024-01-01T00:00:07.250000Z")]
    assert metrics.build_duration(events) == 7.25
    assert metrics.build_duration([]) is None


def test_build_finished_counts_and_times_by_outcome():
    before = value("mininova_builds_total", outcome="rescheduled")
    count = value("mininova_build_duration_seconds_count", outcome="rescheduled")
    metrics.build_finished("rescheduled", [step("2024-01-01T00:00:00Z", "2024-01-01T00:00:03Z")])
    assert value("mininova_builds_total", outcome="rescheduled") == before + 1
    assert value("mininova_build_duration_seconds_count", outcome="rescheduled") == count + 1


def test_a_broken_hook_never_raises_into_the_work():
    before = value("mininova_builds_total", outcome="error")
    metrics.build_finished("error", [{"start_time": "not a time", "finish_time": "x"}])
    assert value("mininova_builds_total", outcome="error") == before + 1  # counted anyway


@pytest.mark.parametrize("hosts, candidates, explanation, reason", [
    ([], [], "0 hosts: none removed", "no hosts"),
    (["h1"], ["h1"], "1 hosts: none removed; claim on h1 lost to a concurrent request",
     "claim lost"),
    (["h1", "h2"], [], "2 hosts: ComputeFilter removed 1 (down); RamFilter removed 1 "
                       "(need 4096 MB, max free 1536 MB)", "RamFilter"),
    # Claims lost, then the candidates left out of the list: still 'claim lost'.
    (["h1", "h2"], [], "2 hosts: ComputeFilter removed 1 (down); claim on h2 lost to a "
                       "concurrent request", "claim lost"),
])
def test_no_valid_host_reason(hosts, candidates, explanation, reason):
    assert metrics.no_valid_host_reason(hosts, candidates, explanation) == reason


def test_every_name_has_the_prefix_and_outcomes_exist_at_zero():
    text = metrics.render()[0].decode()
    names = {fam.name for fam in text_string_to_metric_families(text)}
    assert {n for n in names if not n.startswith(("process_", "python_"))} == \
        {n for n in names if n.startswith("mininova_")}
    samples = scrape(text)
    for outcome in metrics.BUILD_OUTCOMES:
        assert ("mininova_builds_total", frozenset({("outcome", outcome)})) in samples


# -- API ----------------------------------------------------------------------

@pytest.fixture
def api(conf, db, image, recorder):
    app = create_app(conf, db, recorder(), recorder())
    client = app.test_client()
    client.environ_base["HTTP_X_AUTH_TOKEN"] = token_for(db, "default", "admin")
    return client


def test_metrics_endpoint_needs_no_token_and_counts_requests_by_route(api):
    labels = {"method": "GET", "route": "/v1/vms/<ref>", "status": "404"}
    before = value("mininova_api_requests_total", **labels)
    timed = value("mininova_api_request_duration_seconds_count", method="GET",
                  route="/v1/vms/<ref>")
    assert api.get("/v1/vms/nope").status_code == 404
    assert api.get("/v1/vms/%s" % uuid.uuid4()).status_code == 404

    r = api.get("/metrics", headers={"X-Auth-Token": ""})
    assert r.status_code == 200 and r.mimetype == "text/plain"
    samples = scrape(r.get_data(as_text=True))
    assert samples[("mininova_api_requests_total", frozenset(labels.items()))] == before + 2
    assert samples[("mininova_api_request_duration_seconds_count",
                    frozenset({("method", "GET"), ("route", "/v1/vms/<ref>")}))] == timed + 2
    assert ("process_resident_memory_bytes", frozenset()) in samples


def test_unmatched_routes_share_one_label(api):
    before = value("mininova_api_requests_total", method="GET", route="unmatched", status="404")
    api.get("/no/such/%s" % uuid.uuid4())
    assert value("mininova_api_requests_total", method="GET", route="unmatched",
                 status="404") == before + 1


# -- RPC ----------------------------------------------------------------------

class Echo:
    RPC_METHODS = frozenset({"echo", "record"})

    def echo(self, ctxt, value):
        return value

    def record(self, ctxt, value):
        pass


def test_rpc_messages_are_counted_in_and_out():
    transport = rpc.get_transport("memory://%s" % uuid.uuid4().hex)
    topic = "metrics-" + uuid.uuid4().hex[:6]
    server = rpc.RPCServer(transport, rpc.Target(topic), [Echo()], workers=2)
    server.start()
    try:
        client = rpc.RPCClient(transport, rpc.Target(topic), timeout=5)
        ctxt = context.RequestContext()
        assert client.call(ctxt, "echo", value=1) == 1
        client.cast(ctxt, "record", value=2)
        client.cast(ctxt, "nope")  # dead-lettered: no such method
        wait_for(lambda: value("mininova_rpc_messages_received_total", topic=topic,
                               method="record", kind="cast") == 1, 5, what="cast handled")
        wait_for(lambda: value("mininova_rpc_messages_dead_lettered_total", topic=topic) == 1,
                 5, what="dead letter")
    finally:
        server.stop()
        server.wait(5)
    assert value("mininova_rpc_messages_sent_total", topic=topic, method="echo",
                 kind="call") == 1
    assert value("mininova_rpc_messages_sent_total", topic=topic, method="record",
                 kind="cast") == 1
    assert value("mininova_rpc_messages_received_total", topic=topic, method="echo",
                 kind="call") == 1
    assert value("mininova_rpc_call_duration_seconds_count", topic=topic, method="echo") == 1
    assert value("mininova_rpc_handler_duration_seconds_count", topic=topic,
                 method="record") == 1


# -- builds and scheduling -----------------------------------------------------

def spawning(db, host):
    add_host(db, host)
    vm = add_vm(db, "vm-" + host)
    with db.transaction() as s:
        assert allocations.allocate(s, vm, host, Resources(1, 128, 1), RATIOS)
        db_api.instance_update_if(s, vm, {"host": host, "task_state": states.SPAWNING})
    return vm


def test_conductor_counts_builds_by_outcome(db):
    conductor = ConductorManager(db)
    ok, error = (value("mininova_builds_total", outcome=o) for o in ("success", "error"))
    vm = spawning(db, "h1")
    events = [step("2024-01-01T00:00:00Z", "2024-01-01T00:00:04Z")]
    assert conductor.instance_spawned(CTXT, vm, "h1", "running", events)
    assert not conductor.instance_spawned(CTXT, vm, "h1", "running", events)  # redelivered
    assert value("mininova_builds_total", outcome="success") == ok + 1
    assert conductor.instance_build_failed(CTXT, spawning(db, "h2"), "h2", "boom")
    assert value("mininova_builds_total", outcome="error") == error + 1


def test_conductor_counts_a_reschedule(db, recorder):
    before = value("mininova_builds_total", outcome="rescheduled")
    conductor = ConductorManager(db, recorder(), max_attempts=2)
    assert conductor.instance_build_failed(CTXT, spawning(db, "h1"), "h1", "boom")
    assert value("mininova_builds_total", outcome="rescheduled") == before + 1


def test_scheduler_counts_failures_by_reason_and_times_placements(conf, db, recorder):
    scheduler = Builds(db, conf)
    no_hosts = value("mininova_scheduling_failures_total", reason="no hosts")
    ram = value("mininova_scheduling_failures_total", reason="RamFilter")
    placed = value("mininova_scheduling_duration_seconds_count")
    scheduler.build(CTXT, add_vm(db, "a"))
    assert value("mininova_scheduling_failures_total", reason="no hosts") == no_hosts + 1
    add_host(db, "tiny", memory_mb=1024)
    scheduler.build(CTXT, add_vm(db, "b", memory_mb=4096))
    assert value("mininova_scheduling_failures_total", reason="RamFilter") == ram + 1
    scheduler.build(CTXT, add_vm(db, "c"))
    assert value("mininova_scheduling_duration_seconds_count") == placed + 1


# -- the scheduler's database gauges --------------------------------------------

def test_database_gauges_heartbeat_age_vms_by_status_and_capacity(conf, db):
    from prometheus_client import CollectorRegistry, generate_latest
    add_host(db, "fresh")
    add_host(db, "stale", age=120)
    spawning(db, "fresh2")
    registry = CollectorRegistry()
    registry.register(DatabaseCollector(db, service_down_time=60))
    samples = scrape(generate_latest(registry).decode())

    def get(name, **labels):
        return samples[(name, frozenset(labels.items()))]

    assert get("mininova_service_heartbeat_age_seconds", host="fresh",
               binary="mininova-compute") < 30
    assert 120 <= get("mininova_service_heartbeat_age_seconds", host="stale",
                      binary="mininova-compute") < 180
    assert get("mininova_service_up", host="fresh", binary="mininova-compute") == 1
    assert get("mininova_service_up", host="stale", binary="mininova-compute") == 0
    assert get("mininova_vms", status="BUILD") == 1
    assert get("mininova_vms", status="ERROR") == 0
    assert get("mininova_host_memory_bytes", host="fresh") == 4096 * 1024 ** 2
    assert get("mininova_host_memory_used_bytes", host="fresh2") == 128 * 1024 ** 2
    assert get("mininova_database_up") == 1


def test_database_gauges_say_when_the_database_is_away():
    from prometheus_client import CollectorRegistry, generate_latest

    class Broken:
        def transaction(self):
            raise RuntimeError("database away")

    registry = CollectorRegistry()
    registry.register(DatabaseCollector(Broken(), 60))
    samples = scrape(generate_latest(registry).decode())
    assert samples[("mininova_database_up", frozenset())] == 0
    assert not any(name == "mininova_vms" for name, _ in samples)


# -- the daemons' endpoint -------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_on_a_port_disabled_and_taken():
    port = free_port()
    server = metrics.serve("127.0.0.1", port, "test")
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
            assert "mininova_builds_total" in r.read().decode()
        assert metrics.serve("127.0.0.1", port, "test") is None  # taken: logged, not fatal
    finally:
        server.shutdown()
        server.server_close()
    assert metrics.serve("127.0.0.1", 0, "test") is None


def test_watchdog_counts_a_timed_out_build(conf, db, recorder):
    conf.set_override("build_timeout", 1, group="compute")
    before = value("mininova_builds_total", outcome="timed_out")
    vm = spawning(db, "h1")
    with db.transaction() as s:  # the host took the build an hour ago and went silent
        s.execute(sa.update(Instance).where(Instance.id == vm).values(
            updated_at=utcnow() - datetime.timedelta(hours=1)))
    done = Watchdog(db, recorder(), recorder(), conf).run()
    assert done["expired"] == [vm]
    assert value("mininova_builds_total", outcome="timed_out") == before + 1
