"""Prometheus metrics on a real stack: a VM built end to end shows up in the
API's, the scheduler's and the compute daemon's /metrics."""
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from mininova_lab.waiting import wait_for

pytestmark = pytest.mark.real_services("rabbitmq", "postgresql", "libvirt", "http")


def scrape(url):
    r = requests.get(url, timeout=10)  # no token: Prometheus sends none
    assert r.status_code == 200, (url, r.status_code, r.text[:200])
    assert r.headers["Content-Type"].startswith("text/plain")
    return {(s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(r.text) for s in fam.samples}


def val(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


def scrape_all(stack):
    return {name: scrape(url) for name, url in stack.metrics_urls.items()}


def test_a_build_is_counted_by_every_daemon(stack):
    before = scrape_all(stack)
    r = stack.post("/v1/vms", {"name": "metrics1", "image": "blank", "flavor": "m1.tiny"})
    assert r.status_code == 202, r.text
    vm = r.json()["vm"]
    try:
        stack.wait_status(vm["id"], "ACTIVE", timeout=60)
        # The conductor counts right after the commit that made the VM ACTIVE.
        built = lambda s: val(s, "mininova_builds_total", outcome="success")  # noqa: E731
        wait_for(lambda: built(scrape(stack.metrics_urls["conductor"])) >=
                 built(before["conductor"]) + 1, 60, what="the build counted")
        after = scrape_all(stack)
    finally:
        stack.delete("/v1/vms/" + vm["id"])
    api, cond, compute = after["api"], after["conductor"], after["compute"]

    def grew(name, daemon, **labels):
        return val(after[daemon], name, **labels) - val(before[daemon], name, **labels)

    # API: the request by route template and status; the cast it sent.
    assert grew("mininova_api_requests_total", "api", method="POST", route="/v1/vms",
                status="202") == 1
    assert grew("mininova_api_request_duration_seconds_count", "api", method="POST",
                route="/v1/vms") == 1
    assert grew("mininova_rpc_messages_sent_total", "api", topic="conductor",
                method="build_instances", kind="cast") == 1

    # Scheduler: the placement and the call it answered.
    assert grew("mininova_scheduling_duration_seconds_count", "scheduler") == 1
    assert grew("mininova_rpc_messages_received_total", "scheduler", topic="scheduler",
                method="select_destinations", kind="call") == 1
    # Conductor: the build cast to the chosen host.
    assert grew("mininova_rpc_messages_sent_total", "conductor", topic="compute",
                method="build_instance", kind="cast") == 1
    # Conductor: the build and its duration, the report it handled, and the
    # gauges read from the database.
    assert grew("mininova_builds_total", "conductor", outcome="success") == 1
    assert grew("mininova_build_duration_seconds_count", "conductor", outcome="success") == 1
    assert grew("mininova_rpc_messages_received_total", "conductor", topic="conductor",
                method="instance_spawned", kind="call") == 1
    heartbeat = val(cond, "mininova_service_heartbeat_age_seconds", host=stack.host,
                    binary="mininova-compute")
    assert ("mininova_service_heartbeat_age_seconds",
            frozenset({("host", stack.host), ("binary", "mininova-compute")})) in cond
    assert 0 <= heartbeat < 30  # heartbeat_interval = 2 in the stack's config
    assert val(cond, "mininova_service_up", host=stack.host, binary="mininova-compute") == 1
    assert val(cond, "mininova_vms", status="ACTIVE") >= 1
    assert val(cond, "mininova_database_up") == 1
    assert val(cond, "mininova_host_memory_bytes", host=stack.host) > 0

    # Compute: the build it received, the report it sent, its own memory.
    assert grew("mininova_rpc_messages_received_total", "compute", topic="compute",
                method="build_instance", kind="cast") == 1
    assert grew("mininova_rpc_messages_sent_total", "compute", topic="conductor",
                method="instance_spawned", kind="call") == 1
    assert grew("mininova_rpc_call_duration_seconds_count", "compute", topic="conductor",
                method="instance_spawned") == 1
    assert val(compute, "process_resident_memory_bytes") > 0
    assert val(api, "process_resident_memory_bytes") > 0
    stack.wait_gone(vm["id"])
