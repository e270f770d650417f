"""The bench's verdicts and its counting of failed requests, in-process:
a phase that raises is FAILED in the table, NO in goals_met and exit
status 1; a figure measured with failed requests or under less churn than
its goal names is NO; load.Series counts every kind of failed request."""
import http.server
import json
import threading
import time

import pytest

from bench import load, report
from bench import run as bench_run

GOOD_P4 = {
    "p4_churn": {"target_per_s": 50.0, "achieved_per_s": 50.0},
    "p4_get_p50_ms": 10.0, "p4_get_p95_ms": 12.0, "p4_get_p99_ms": 20.0,
    "p4_get_failures": 0, "p4_get_sql_p50_ms": 3.0, "p4_get_sql_p99_ms": 5.0,
    "p4_page_p50_ms": 3.0, "p4_page_p99_ms": 5.0, "p4_page_failures": 0,
    "p4_post_p50_ms": 10.0, "p4_post_p99_ms": 40.0, "p4_post_rate_per_s": 350.0,
    "p4_post_failures": 0,
}
GOOD_POST = {k: v for k, v in GOOD_P4.items() if k.startswith("p4_post")}
P4_GOALS = ("P4 churn: VM state changes/s", "P4 GET /v1/vms @1000 p99, churn 5%/s",
            "P4 GET ?limit=100 p99, churn 5%/s", "P4 POST /v1/vms accepted/s, 10 clients",
            "P4 POST /v1/vms p99, 10 clients")


PARAMS = {"p4_vms": 1000, "p4_churn_pct": 5.0, "p4_concurrency": 10}


def verdicts(results, only=("p4",), errors=None):
    status = report.phase_status(set(only), errors or {})
    rows = report.table(dict(results, params=PARAMS), status)
    return rows, report.goals_met(rows), report.exit_status(status)


def test_good_figures_meet_their_goals():
    rows, met, code = verdicts(GOOD_P4)
    assert {f: met[f] for f in P4_GOALS} == dict.fromkeys(P4_GOALS, True)
    assert code == 0
    assert all(row["phase"].startswith("P4") for row in rows)   # phases not run: no rows


def test_a_failed_phase_is_no_not_left_out():
    errors = {"P4 list": "RuntimeError: broker gone"}
    rows, met, code = verdicts(GOOD_POST, errors=errors)
    listed = [row for row in rows if row["phase"] == "P4 list"]
    assert listed and all(row["mininova"] == "FAILED" for row in listed)
    assert all(row["met"] == "NO" for row in listed if row["goal"])
    assert met["P4 GET /v1/vms @1000 p99, churn 5%/s"] is False
    assert met["P4 GET ?limit=100 p99, churn 5%/s"] is False
    assert met["P4 POST /v1/vms accepted/s, 10 clients"] is True   # the other phase stands
    assert met["P4 POST /v1/vms p99, 10 clients"] is True
    assert code == 1


def test_a_failed_start_fails_every_stack_phase_asked_for():
    status = report.phase_status({"p1", "p4", "p3"}, {"start": "boom"})
    assert status["floor+P1+P5"] == status["P4 list"] == status["P4 POST"] == "failed"
    assert status["P3"] == "ok" and status["P2"] == "not run"
    assert report.exit_status(status) == 1


@pytest.mark.parametrize("change, figure", [
    ({"p4_get_failures": 1}, "P4 GET /v1/vms @1000 p99, churn 5%/s"),
    ({"p4_churn": {"target_per_s": 50.0, "achieved_per_s": 30.0}},
     "P4 GET /v1/vms @1000 p99, churn 5%/s"),
    ({"p4_page_failures": 2}, "P4 GET ?limit=100 p99, churn 5%/s"),
    ({"p4_page_p99_ms": None}, "P4 GET ?limit=100 p99, churn 5%/s"),   # ran, yet missing
    ({"p4_post_failures": 3}, "P4 POST /v1/vms accepted/s, 10 clients"),
    ({"p4_post_failures": 3}, "P4 POST /v1/vms p99, 10 clients"),
    ({"p4_post_rate_per_s": 299.0}, "P4 POST /v1/vms accepted/s, 10 clients"),
    ({"p4_post_p99_ms": 101.0}, "P4 POST /v1/vms p99, 10 clients"),
])
def test_a_fast_figure_with_failures_or_too_little_churn_is_not_met(change, figure):
    _, met, code = verdicts(dict(GOOD_P4, **change))
    assert met[figure] is False
    assert code == 0   # the phase ran: the goal is not met, the run did not fail


class StubBench:
    """bench.harness.Bench as run.main uses it, with no stack."""
    stack = None

    def __init__(self, args, workdir):
        self.results = {}
        self.profiler = type("P", (), {"files": []})()

    def start(self):
        pass

    def stop(self):
        pass


def test_main_reports_a_phase_that_raises(monkeypatch, tmp_path):
    """run.main's wiring: one phase raises, the next still runs; the JSON, the
    table and the exit status all say so."""

    def broken(bench):
        raise RuntimeError("the broker went away")
    monkeypatch.setattr(bench_run, "Bench", StubBench)
    monkeypatch.setattr(bench_run, "TINY", __file__)
    monkeypatch.setattr(bench_run, "environment", lambda: {
        "cpus": 2, "loadavg_at_start": ["0", "0", "0"], "other_guests_running_at_start": 0})
    monkeypatch.setattr(bench_run.quiet, "wait_quiet", lambda *a: dict(QUIET))
    monkeypatch.setattr(bench_run.phase_list, "run", broken)
    monkeypatch.setattr(bench_run.phase_api, "run", lambda bench: bench.results.update(
        p4_post_concurrency=10, **GOOD_POST))
    out = tmp_path / "r.json"
    code = bench_run.main(["--only", "p4", "--json", str(out)])
    r = json.loads(out.read_text())
    assert code == 1
    assert r["phases"]["P4 list"] == "failed" and r["phases"]["P4 POST"] == "ok"
    assert "the broker went away" in r["errors"]["P4 list"]
    assert r["goals_met"]["P4 GET /v1/vms @1000 p99, churn 5%/s"] is False
    assert r["goals_met"]["P4 POST /v1/vms accepted/s, 10 clients"] is True
    assert r["p4_get_p99_ms"] is None


def test_main_refuses_a_phase_while_others_use_the_cpu(monkeypatch, tmp_path):
    """A phase is not measured on a busy machine: refused, the consumers named."""
    ran = []
    busy = dict(QUIET, foreign=1.4, quiet=False, waited_s=120.0,
                top=[("qemu-system-x86", 4242, 0.9)])
    monkeypatch.setattr(bench_run, "Bench", StubBench)
    monkeypatch.setattr(bench_run, "TINY", __file__)
    monkeypatch.setattr(bench_run, "environment", lambda: {
        "cpus": 2, "loadavg_at_start": ["0", "0", "0"], "other_guests_running_at_start": 0})
    monkeypatch.setattr(bench_run.quiet, "wait_quiet", lambda *a: dict(busy))
    monkeypatch.setattr(bench_run.phase_list, "run", lambda bench: ran.append("list"))
    monkeypatch.setattr(bench_run.phase_api, "run", lambda bench: ran.append("api"))
    out = tmp_path / "r.json"
    assert bench_run.main(["--only", "p4", "--json", str(out)]) == 1
    r = json.loads(out.read_text())
    assert ran == [] and r["phases"]["P4 list"] == "failed"
    assert "qemu-system-x86[4242]" in r["errors"]["P4 list"]
    assert r["load_before"]["P4 POST"]["foreign"] == 1.4


QUIET = {"machine": 0.1, "own": 0.05, "foreign": 0.05, "steal": 0.0, "top": [],
         "loadavg": ["0.1"] * 3, "quiet": True, "waited_s": 0.0}


# -- counting failed requests ------------------------------------------------

class FlakyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path == "/hang":
            time.sleep(1.0)
        if self.path == "/drop":   # closes without an answer, every time
            self.close_connection = True
            return
        code, body = {"/ok": (200, b'{"vms": [1, 2]}'), "/500": (500, b'{"error": "x"}'),
                      "/garbled": (200, b'{"vms": ['), "/hang": (200, b"{}")}[self.path]
        try:
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except BrokenPipeError:   # /hang: the client gave up, as it should
            self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def flaky_url():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FlakyHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield "http://127.0.0.1:%d" % server.server_address[1]
    server.shutdown()
    server.server_close()


def test_series_counts_every_kind_of_failed_request(flaky_url):
    client = load.Client(flaky_url, "token", timeout=0.3)

    def get(path):
        def one():
            seconds, status, body, _ = client.timed("GET", path)
            if status != 200:
                raise load.Failed("%s -> %s" % (path, status))
            if len(body["vms"]) != 2:
                raise load.Failed("wrong body")
            return seconds
        return one
    s = load.Series("flaky")
    for path in ("/ok", "/500", "/ok", "/garbled", "/drop", "/hang", "/ok"):
        s.measure(get(path))
    client.close()
    out = s.summary()
    assert (out["n"], out["failures"]) == (3, 4), out
    reasons = " ".join(out["failure_reasons"])
    assert "/500 -> 500" in reasons and "JSONDecodeError" in reasons
    assert "RemoteDisconnected" in reasons and "timed out" in reasons
    assert out["max_ms"] < 300   # the failures' time is not among the samples


def test_p8_snapshot_rows_beside_their_floor_and_failed_when_the_phase_failed():
    figures = {"p8_snapshot_p50_ms": 1900.0, "p8_snapshot_floor_p50_ms": 1100.0,
               "p8_snapshot_max_ms": 2300.0, "p8_snapshot_overhead_ms": 800.0,
               "p8_snapshot_convert_p50_ms": 100.0}
    rows, met, code = verdicts(figures, only=("p8",))
    first = rows[0]
    assert (first["phase"], first["mininova"], first["floor"], first["ratio"]) == (
        "P8 snapshot", "1900 ms", "1100 ms", "1.73×")
    assert code == 0 and all(r["phase"] in ("P8 snapshot", "P8 moves") for r in rows)
    rows, met, code = verdicts({}, only=("p8",), errors={"P8 snapshot": "boom"})
    assert code == 1 and rows[0]["mininova"] == "FAILED"


P7_TOTAL = "P7 live migration total (POST → completed; raw: virsh) p50"
P7_DOWNTIME = "P7 live migration downtime (libvirt's job) p50"


def test_p7_goals_are_over_the_raw_migration():
    good = {"p7_mininova_total_ms": 1700.0, "p7_raw_total_ms": 1500.0,
            "p7_mininova_downtime_ms": 120.0, "p7_raw_downtime_ms": 100.0,
            "p7_mininova_elapsed_ms": 800.0, "p7_raw_elapsed_ms": 750.0}
    rows, met, code = verdicts(good, only=("p7",))
    assert {row["phase"] for row in rows} == {"P7"} and code == 0
    assert met[P7_TOTAL] is True and met[P7_DOWNTIME] is True
    _, met, _ = verdicts(dict(good, p7_mininova_total_ms=1801.0,
                              p7_mininova_downtime_ms=151.0), only=("p7",))
    assert met[P7_TOTAL] is False and met[P7_DOWNTIME] is False
    _, met, code = verdicts({}, only=("p7",), errors={"P7": "sim host down"})
    assert met[P7_TOTAL] is False and code == 1


def test_p8_moves_rows_beside_their_floor():
    figures = {"p8_migrate_p50_ms": 9000.0, "p8_migrate_floor_p50_ms": 6000.0,
               "p8_migrate_active_p50_ms": 9500.0, "p8_migrate_floor_copy_start_p50_ms": 900.0,
               "p8_resize_p50_ms": 9200.0, "p8_resize_floor_p50_ms": 6100.0}
    rows, met, code = verdicts(figures, only=("p8",))
    moves = [r for r in rows if r["phase"] == "P8 moves"]
    assert [(r["mininova"], r["floor"], r["ratio"]) for r in moves] == [
        ("9000 ms", "6000 ms", "1.50×"), ("9500 ms", "", ""), ("900 ms", "", ""),
        ("9200 ms", "6100 ms", "1.51×")]


def test_the_post_load_cpu_is_split_by_component():
    from bench import phase_api
    before = {1: (0, "postgres", 1.0), 2: (0, "beam.smp", 5.0), 3: (0, "kworker/0:1", 0.0)}
    after = {1: (0, "postgres", 1.5), 2: (0, "beam.smp", 5.25), 3: (0, "kworker/0:1", 0.05),
             4: (0, "postgres", 0.2)}   # a backend started meanwhile: all its CPU counts
    split = phase_api.cpu_by_component(before, after, 10.0, 11.5, 100)
    assert split["postgres"] == 7.0 and split["rabbitmq"] == 2.5 and split["other"] == 0.5
    assert split["machine"] == 15.0 and split["api"] == 0.0
