"""The benchmark harness (bench/run.py, `make bench`) in its quickest mode:
every phase runs end to end on the real services and the JSON it writes has
every figure, with sane values. No goal is asserted: benchmarks report, tests
don't time."""
import json
import math
import subprocess
import sys

import libvirt
import pytest

from bench.floor import find_domains
from tests.functional.stack import ROOT

pytestmark = pytest.mark.real_services("rabbitmq", "postgresql", "libvirt", "http")

KEYS = ("floor_p50_ms", "p1_p50_ms", "p1_overhead_ms", "p2_wall_s", "p2_floor_wall_s",
        "p3_vms_per_s", "p3_overcommit", "p4_get_p99_ms", "p4_post_p50_ms", "p5_p50_ms",
        "p6_rss_mb")
SMOKE = ["--quick", "--samples", "2", "--p2-vms", "2", "--p4-vms", "1000", "--p4-gets", "5",
         "--p4-idle-posts", "2", "--p4-posts", "10", "--p4-concurrency", "2",
         "--fake-hosts", "1", "--hosts", "2", "--vms", "10", "--sim-threads", "4"]


def positive(value):
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_bench_quickest_run_writes_every_figure(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "bench.run", *SMOKE, "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads(out.read_text())

    for key in KEYS:
        assert key in r, key
    for key in ("floor_p50_ms", "p1_p50_ms", "p2_wall_s", "p2_floor_wall_s", "p3_vms_per_s",
                "p4_get_p99_ms", "p4_post_p50_ms", "p5_p50_ms"):
        assert positive(r[key]), (key, r[key])
    # Means what it says: the overhead is P1 minus the floor, P1 includes a boot.
    assert r["p1_overhead_ms"] == round(r["p1_p50_ms"] - r["floor_p50_ms"], 1)
    assert len(r["floor_samples_ms"]) == len(r["p1_samples_ms"]) == 2
    assert r["p5_p50_ms"] >= r["p5_virsh_p50_ms"] > 0
    assert r["p3_overcommit"] == 0 and r["p3_active"] == 10
    assert r["p4_vms"] == 1000 and r["p4_posts"] == 10
    assert r["p4_built"].get("active") == 10
    assert set(r["p6_rss_mb"]) == {"api", "scheduler", "compute"}
    assert all(5 < mb < 2000 for mb in r["p6_rss_mb"].values()), r["p6_rss_mb"]
    # Floor and mininova boot the same domain, up to names and paths.
    assert r["domain_settings"]["type"] in ("qemu", "kvm")
    assert r["domain_settings"]["serial_log"] is True

    # One table row per figure, each with its goal verdict; printed too.
    figures = [row["figure"] for row in r["table"]]
    for prefix in ("P1 overhead", "P2 ", "P3 VMs/s", "P3 over-commit", "P4 GET", "P4 POST",
                   "P5 ", "P6 RSS api", "P6 RSS scheduler", "P6 RSS compute"):
        assert any(f.startswith(prefix) for f in figures), prefix
    assert "met?" in proc.stdout and "P1 overhead over floor p50" in proc.stdout

    # Nothing left behind: no domain of the bench's stack or of its floor.
    conn = libvirt.open("qemu:///system")
    try:
        mine = (r["stack_host"], "bench-floor-" + r["stack_host"][len("host-"):])
        leftover = [d.name() for d in find_domains(conn, lambda m: m.host in mine)]
    finally:
        conn.close()
    assert not leftover, leftover
