"""The benchmark harness (bench/run.py, `make bench`) in its quickest mode:
every phase runs end to end on the real services and the JSON it writes has
every figure, checked against evidence the harness did not compute from
its own timings: the wall time this test measured, the timestamps the
daemons wrote in each VM's row, the VMs and states in the DB and in the
API. No goal is asserted: benchmarks report, tests don't time. (The
verdicts of a failed phase and the counting of failed requests are checked
in-process, in tests/unit/test_bench_report.py.)"""
import json
import math
import subprocess
import sys
import time

import libvirt
import pytest

from bench.floor import find_domains
from mininova_lab.stack import ROOT

pytestmark = pytest.mark.real_services("rabbitmq", "postgresql", "libvirt", "http")

KEYS = ("floor_p50_ms", "p1_p50_ms", "p1_overhead_ms", "p2_wall_s", "p2_floor_wall_s",
        "p3_vms_per_s", "p3_overcommit", "p4_get_p99_ms", "p4_get_failures", "p4_page_p99_ms",
        "p4_get_warm_p99_ms", "p4_post_p50_ms", "p5_p50_ms", "p6_rss_mb")
GETS = 5
SMOKE = ["--quick", "--samples", "2", "--p2-vms", "2", "--p4-vms", "1000",
         "--p4-gets", str(GETS), "--p4-get-interval", "0.05",
         "--p4-idle-posts", "2", "--p4-posts", "10", "--p4-concurrency", "2",
         "--fake-hosts", "1", "--hosts", "2", "--vms", "10", "--sim-threads", "4",
         "--p10-samples", "2", "--p10-loops", "2",
         "--p9-samples", "2", "--p9-hosts", "1", "--p9-vms", "10",
         # The smoke checks the harness, not figures: measured whatever else runs.
         "--busy-ok"]
# Python's clock and the DB's timestamps (microseconds, written by the
# daemons with the same system clock) may differ by rounding only.
CLOCK_TOLERANCE_MS = 2.0


def positive(value):
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_bench_quickest_run_writes_every_figure(tmp_path):
    out = tmp_path / "bench.json"
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "bench.run", *SMOKE, "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    wall_ms = (time.monotonic() - started) * 1000.0
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads(out.read_text())

    assert r["errors"] == {} and set(r["phases"].values()) == {"ok"}, r["phases"]
    for key in KEYS:
        assert key in r, key
    for key in ("floor_p50_ms", "p1_p50_ms", "p2_wall_s", "p2_floor_wall_s", "p3_vms_per_s",
                "p4_get_p99_ms", "p4_page_p99_ms", "p4_post_p50_ms", "p5_p50_ms",
                "p5_event_p50_ms"):
        assert positive(r[key]), (key, r[key])
    # From libvirt's Stopped event, inside the whole P5 interval.
    assert all(0 < e <= p for e, p in zip(r["p5_event_samples_ms"], r["p5_samples_ms"]))
    # The machine's load before every phase that ran.
    assert set(r["load_before"]) == set(r["phases"]), r["load_before"].keys()
    # P9: both buses measured in the same run, every VM of each burst ACTIVE.
    for setup in ("classic", "quorum"):
        assert positive(r["p9_%s_create_p50_ms" % setup]), r["p9"]
        assert positive(r["p9_%s_vms_per_s" % setup]), r["p9"]
        assert r["p9"][setup]["active"] == r["p9"][setup]["accepted"] == 10, r["p9"]
    for load in r["load_before"].values():
        assert load["machine"] >= 0 and load["foreign"] >= 0 and load["loadavg"]

    # Every figure fits in the time this test saw the run take.
    assert 0 < r["run_time_s"] * 1000.0 <= wall_ms
    timed = sum(r["floor_samples_ms"]) + sum(r["p1_samples_ms"]) + sum(r["p5_samples_ms"])
    assert timed < r["run_time_s"] * 1000.0

    # P1 holds a whole build: the API wrote the row and the conductor marked it
    # launched inside each sample. P5 holds the conductor's SHUTOFF write.
    tol = CLOCK_TOLERANCE_MS
    assert len(r["p1_db_evidence"]) == len(r["p5_db_evidence"]) == 2
    for e in r["p1_db_evidence"]:
        assert -tol <= e["created_ms"] <= e["launched_ms"] <= e["sample_ms"] + tol, e
    for e in r["p5_db_evidence"]:
        assert e["power_state"] == "shutdown", e
        assert 0 < e["updated_ms"] <= e["sample_ms"] + tol, e
    assert r["p3_overcommit"] == 0 and r["p3_active"] == 10

    # P4 list: every request counted, none failed, each under its conditions.
    lists = r["p4_list"]
    assert r["p4_vms"] == 1000
    for name, n in (("warm", GETS), ("churn", GETS), ("page", GETS), ("cold", 5)):
        f = lists[name]
        assert (f["n"], f["failures"], f["floor"]["n"]) == (n, 0, n), (name, f)
        assert positive(f["p50_ms"]) and positive(f["floor"]["p50_ms"]), (name, f)
        assert f["max_ms"] <= f["wall_s"] * 1000.0, (name, f)
        assert f["conditions"], name
    # The churn went through the conductor and the API listed what it did:
    # VMs SHUTOFF in the API's list = stopped rows in the DB = the churn's count,
    # and every change applied is a distinct row changed in the DB.
    churn, check = r["p4_churn"], r["p4_list_check"]
    assert churn["applied"] > 0 and churn["errors"] == churn["refused"] == 0, churn
    assert check["api_shutoff"] == check["db_stopped"] == churn["stopped_now"] > 0, check
    assert check["db_rows_changed"] == min(churn["applied"], 1000), check
    assert churn["applied"] <= churn["target_per_s"] * churn["seconds"] + 1, churn

    # P4 POST: as many VMs ACTIVE in the DB as POSTs accepted.
    assert r["p4_posts"] == 10 and r["p4_post_failures"] == 0
    assert r["p4_built"].get("active") == 10
    assert set(r["p6_rss_mb"]) == {"api", "scheduler", "conductor", "compute"}
    assert all(5 < mb < 2000 for mb in r["p6_rss_mb"].values()), r["p6_rss_mb"]
    # P10: each path's servers were built inside its samples (the API wrote the
    # row and the conductor marked it launched within the time taken), every
    # client sent /compute requests the API accounted for, the loop ran.
    p10 = r["p10"]
    for path in ("v1", "cli", "sdk"):
        x = p10["paths"][path]
        assert positive(x["cold_ms"]) and positive(x["p50_ms"]), (path, x)
        assert len(x["evidence"]) == 2, (path, x)
        for e in x["evidence"]:
            assert -tol <= e["created_ms"] <= e["launched_ms"] <= e["sample_ms"] + tol, (path, e)
    for path in ("cli", "sdk"):
        assert p10["paths"][path]["server"]["compute"]["requests"] >= 2, p10["paths"][path]
    assert p10["paths"]["v1"]["server"]["v1"]["requests"] >= 2
    assert p10["rally"]["loops"] == 2 and all(positive(s) for s in p10["rally"]["samples_ms"])
    assert positive(r["p10_compute_server_ms"]) and positive(r["p10_cli_import_p50_ms"])
    # Floor and mininova boot the same domain, up to names and paths.
    assert r["domain_settings"]["type"] in ("qemu", "kvm")
    assert r["domain_settings"]["serial_log"] is True

    # One table row per figure, each goal with its verdict; printed too.
    figures = [row["figure"] for row in r["table"]]
    for prefix in ("P1 overhead", "P2 ", "P3 VMs/s", "P3 over-commit", "P4 churn",
                   "P4 GET /v1/vms", "P4 GET ?limit=100", "P4 POST", "P5 ", "P6 RSS api",
                   "P6 RSS scheduler", "P6 RSS compute", "P10 API time per /compute request",
                   "P10 openstack server create --wait", "P10 openstacksdk boot+delete"):
        assert any(f.startswith(prefix) for f in figures), prefix
    # P8 snapshot: each sample's image as big as the floor's, its steps timed.
    assert r["p8_snapshot_samples"] == 2
    assert positive(r["p8_snapshot_p50_ms"]) and positive(r["p8_snapshot_floor_p50_ms"])
    assert all(s["mininova_bytes"] == s["floor_bytes"] > 0 for s in r["p8_snapshot_sizes"])
    assert {"snapshot disk", "snapshot upload"} <= set(r["p8_snapshot_steps_p50_ms"])
    assert any(f.startswith("P8 snapshot") for f in figures)
    assert "met?" in proc.stdout and "P1 overhead over floor p50" in proc.stdout
    assert "how each figure was measured" in proc.stdout

    # Nothing left behind: no domain of the bench's stack or of its floor.
    conn = libvirt.open("qemu:///system")
    try:
        mine = (r["stack_host"], "bench-floor-" + r["stack_host"][len("host-"):])
        leftover = [d.name() for d in find_domains(conn, lambda m: m.host in mine)]
    finally:
        conn.close()
    assert not leftover, leftover
