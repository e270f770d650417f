"""P10's accounting in-process: the API's request-duration histogram read
from Prometheus' text by surface between two scrapes, and P10's verdict
(the facade's server-side time per /compute request)."""
from bench import openstack_clients, report

BEFORE = """\
# TYPE mininova_api_request_duration_seconds histogram
mininova_api_request_duration_seconds_bucket{method="GET",route="/v1/vms/<vm_ref>",le="0.005"} 1.0
mininova_api_request_duration_seconds_count{method="GET",route="/v1/vms/<vm_ref>"} 2.0
mininova_api_request_duration_seconds_sum{method="GET",route="/v1/vms/<vm_ref>"} 0.004
mininova_api_request_duration_seconds_count{method="GET",route="/metrics"} 7.0
mininova_api_request_duration_seconds_sum{method="GET",route="/metrics"} 0.07
"""
AFTER = BEFORE.replace('vm_ref>"} 2.0', 'vm_ref>"} 3.0').replace(
    'vm_ref>"} 0.004', 'vm_ref>"} 0.007').replace(
    '"/metrics"} 7.0', '"/metrics"} 8.0') + """\
mininova_api_request_duration_seconds_count{method="POST",route="/compute/v2.1/servers"} 1.0
mininova_api_request_duration_seconds_sum{method="POST",route="/compute/v2.1/servers"} 0.02
mininova_api_request_duration_seconds_count{method="GET",route="/compute/v2.1/servers/<ref>"} 3.0
mininova_api_request_duration_seconds_sum{method="GET",route="/compute/v2.1/servers/<ref>"} 0.01
mininova_api_request_duration_seconds_count{method="POST",route="/identity/v3/auth/tokens"} 1.0
mininova_api_request_duration_seconds_sum{method="POST",route="/identity/v3/auth/tokens"} 0.1
"""


def test_requests_answered_between_two_scrapes_by_surface():
    before = openstack_clients.parse_durations(BEFORE)
    after = openstack_clients.parse_durations(AFTER)
    assert before[("GET", "/v1/vms/<vm_ref>")] == (0.004, 2)
    served = openstack_clients.by_surface(before, after)
    assert set(served) == {"v1", "compute", "identity", "other"}
    assert served["v1"][1] == 1 and round(served["v1"][0], 6) == 0.003
    assert served["compute"][1] == 4 and round(served["compute"][0], 6) == 0.03
    assert served["identity"][1] == 1
    assert served["other"][1] == 1   # the scrape of /metrics, never counted as the facade's


PARAMS = {"p4_vms": 1000, "p4_churn_pct": 5.0, "p4_concurrency": 10}


def test_p10_goal_is_the_facades_time_per_compute_request():
    status = report.phase_status({"p10"}, {})
    good = {"params": PARAMS, "p10_compute_server_ms": 12.0, "p10_v1_server_ms": 4.0,
            "p10_cli_p50_ms": 7000.0, "p10_v1_p50_ms": 2000.0}
    rows = report.table(good, status)
    figure = "P10 API time per /compute request (floor: per /v1 request)"
    assert report.goals_met(rows) == {figure: True}
    assert all(row["phase"] == "P10" for row in rows)
    assert report.goals_met(report.table(dict(good, p10_compute_server_ms=25.0),
                                         status)) == {figure: False}
    assert report.goals_met(report.table({"params": PARAMS}, status)) == {figure: False}   # missing: NO
    failed = report.table(good, report.phase_status({"p10"}, {"P10": "boom"}))
    assert report.goals_met(failed) == {figure: False}
