"""Benchmarks against the physical floor, in one run (``make bench``).

    python -m bench.run               # the full run (3-5 minutes on 2 CPUs)
    python -m bench.run --quick       # a smoke run: fewer samples, a small simulation
    python -m bench.run --profile     # also py-spy profiles of the daemons, per phase
    python -m bench.run --only p4 --profile --profile-mode gil   # one phase, CPU profile

Brings up a private stack on the real services (tests.functional.stack.Stack:
its own RabbitMQ vhost and PostgreSQL database, the compute on the real
libvirtd with QEMU under TCG, no NIC by default) and measures, side by side
with what the same work costs without mininova:

- floor: qemu-img overlay + defineXML + create + RUNNING with libvirt-python,
  same image, same domain XML (mininova's GuestConfig), p50/p95;
- P1: POST /v1/vms -> ACTIVE in the API, one VM at a time, p50/p95 and the
  overhead over the floor's p50 (floor and P1 samples are interleaved, so
  both see the same host);
- P2: N concurrent POSTs on one host -> all ACTIVE, against N floor boots
  from N threads (each on its own libvirt connection: libvirtd serves at most
  5 calls of one connection at a time), median of interleaved rounds;
- P4: GET /v1/vms with 1000 VMs in the DB (rows inserted directly), p50/p99,
  against the same SELECT in psycopg2; POST /v1/vms latency under a
  concurrent closed-loop load (VMs built on fake-driver hosts, the real host
  disabled meanwhile), against one INSERT + COMMIT in psycopg2;
- P5: external ``virsh destroy`` -> SHUTOFF in the API, against virsh itself;
- P6: resident memory (VmRSS) of each daemon after all of the above;
- P3: the scale simulation (bench.scale_sim), after the stack is gone.

A VM's status is watched in its DB row (a cheap primary-key SELECT every
5 ms, see DB_POLL) and then confirmed through the API, whose answer times
it: polling the API itself would take CPU from the guests being started.

This module is the command line, the table and the JSON; bench/harness.py
the stack and the helpers; one module per phase: phases_latency.py (floor,
P1, P5), phase_burst.py (P2), phase_api.py (P4), phase_memory.py (P6),
phase_scale.py (P3).

Prints one table (figure, mininova, floor, ratio, goal, met?) and writes the
same as JSON to bench/results/latest.json (or --json PATH). Benchmarks
report; the exit status is 0 whether goals are met or not (1 on a failure of
the harness itself).
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback

import libvirt

from bench import phase_api, phase_burst, phase_memory, phase_scale, phases_latency, profiling
from bench.harness import TINY, URI, Bench, log

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results")

# Goals of the issue "Benchmarks against the physical floor".
GOALS = {
    "p1_overhead_ms": 150.0,      # POST -> ACTIVE over the floor's p50
    "p2_ratio": 1.5,              # N concurrent -> all ACTIVE, over N floor boots in parallel
    "p3_vms_per_s": 100.0,
    "p3_overcommit": 0,
    "p4_get_p99_ms": 50.0,        # at 1000 VMs
    "p4_post_p50_ms": 20.0,       # under concurrent load
    "p5_ms": 1000.0,
    "p6_rss_mb": {"api": 120.0, "scheduler": 120.0, "compute": 80.0},
}

# Keys the JSON always has (null when their phase failed).
REQUIRED_KEYS = ("floor_p50_ms", "p1_p50_ms", "p1_overhead_ms", "p2_wall_s", "p2_floor_wall_s",
                 "p3_vms_per_s", "p3_overcommit", "p4_get_p99_ms", "p4_post_p50_ms",
                 "p5_p50_ms", "p6_rss_mb")

FULL = dict(samples=20, p2_vms=20, p2_rounds=3, p4_vms=1000, p4_gets=200, p4_idle_posts=50,
            p4_posts=400, p4_concurrency=10, fake_hosts=3, hosts=50, vms=1000)
QUICK = dict(samples=5, p2_vms=5, p2_rounds=1, p4_vms=1000, p4_gets=50, p4_idle_posts=10,
             p4_posts=100, p4_concurrency=10, fake_hosts=1, hosts=10, vms=200)


# -- the table ------------------------------------------------------------------

def table(r, sim=True):
    """The rows (figure, mininova, floor, ratio, goal, met) of the results;
    a figure whose phase failed or was skipped shows "—" (met: "n/a")."""
    g = GOALS
    v = r.get

    def num(x, unit, fmt="%.0f"):
        return "—" if x is None else (fmt % x) + " " + unit

    def ratio(a, b):
        return "" if not a or not b else "%.2f×" % (a / b)

    def met(*values_and_check):
        *values, check = values_and_check
        if any(x is None for x in values):
            return "n/a"
        return "yes" if check(*values) else "NO"

    def at_most(goal):
        return lambda x: x <= goal
    p3 = v("p3") or {}
    rows = [
        ("floor / P1 POST→ACTIVE p50", num(v("p1_p50_ms"), "ms"), num(v("floor_p50_ms"), "ms"),
         ratio(v("p1_p50_ms"), v("floor_p50_ms")), "", ""),
        ("floor / P1 POST→ACTIVE p95", num(v("p1_p95_ms"), "ms"), num(v("floor_p95_ms"), "ms"),
         ratio(v("p1_p95_ms"), v("floor_p95_ms")), "", ""),
        ("P1 overhead over floor p50", num(v("p1_overhead_ms"), "ms"), "", "",
         "≤ %.0f ms" % g["p1_overhead_ms"],
         met(v("p1_overhead_ms"), at_most(g["p1_overhead_ms"]))),
        ("P2 %s concurrent → all ACTIVE" % v("p2_vms", "N"), num(v("p2_wall_s"), "s", "%.2f"),
         num(v("p2_floor_wall_s"), "s", "%.2f"), ratio(v("p2_wall_s"), v("p2_floor_wall_s")),
         "≤ %.1f× floor" % g["p2_ratio"], met(v("p2_ratio"), at_most(g["p2_ratio"]))),
    ]
    if sim:
        rows += [
            ("P3 VMs/s (%s hosts, %s VMs)" % (p3.get("hosts", "?"), p3.get("vms", "?")),
             num(v("p3_vms_per_s"), "/s", "%.1f"), "", "", "≥ %.0f/s" % g["p3_vms_per_s"],
             met(v("p3_vms_per_s"), lambda x: x >= g["p3_vms_per_s"])),
            ("P3 over-commit (hosts; claim mismatch)",
             "—" if v("p3_overcommit") is None else "%d; %d" % (
                 v("p3_overcommit"), v("p3_claim_mismatch")), "", "", "0",
             met(v("p3_overcommit"), v("p3_claim_mismatch"), lambda a, b: a == b == 0)),
        ]
    rows += [
        ("P4 GET /v1/vms @%s p50" % v("p4_vms", "N"), num(v("p4_get_p50_ms"), "ms", "%.1f"),
         num(v("p4_get_sql_p50_ms"), "ms", "%.1f"),
         ratio(v("p4_get_p50_ms"), v("p4_get_sql_p50_ms")), "", ""),
        ("P4 GET /v1/vms @%s p99" % v("p4_vms", "N"), num(v("p4_get_p99_ms"), "ms", "%.1f"),
         num(v("p4_get_sql_p99_ms"), "ms", "%.1f"),
         ratio(v("p4_get_p99_ms"), v("p4_get_sql_p99_ms")),
         "≤ %.0f ms" % g["p4_get_p99_ms"], met(v("p4_get_p99_ms"), at_most(g["p4_get_p99_ms"]))),
        ("P4 POST /v1/vms p50, %s clients" % v("p4_post_concurrency", "N"),
         num(v("p4_post_p50_ms"), "ms", "%.1f"), num(v("p4_post_sql_p50_ms"), "ms", "%.1f"),
         ratio(v("p4_post_p50_ms"), v("p4_post_sql_p50_ms")),
         "≤ %.0f ms" % g["p4_post_p50_ms"],
         met(v("p4_post_p50_ms"), at_most(g["p4_post_p50_ms"]))),
        ("P4 POST /v1/vms p99, %s clients" % v("p4_post_concurrency", "N"),
         num(v("p4_post_p99_ms"), "ms", "%.1f"), num(v("p4_post_sql_p99_ms"), "ms", "%.1f"),
         ratio(v("p4_post_p99_ms"), v("p4_post_sql_p99_ms")), "", ""),
        ("P5 virsh destroy → SHUTOFF p50", num(v("p5_p50_ms"), "ms"),
         num(v("p5_virsh_p50_ms"), "ms"), ratio(v("p5_p50_ms"), v("p5_virsh_p50_ms")),
         "≤ %.0f ms" % g["p5_ms"], met(v("p5_p50_ms"), at_most(g["p5_ms"]))),
        ("P5 virsh destroy → SHUTOFF max", num(v("p5_max_ms"), "ms"),
         num(v("p5_virsh_max_ms"), "ms"), ratio(v("p5_max_ms"), v("p5_virsh_max_ms")),
         "≤ %.0f ms" % g["p5_ms"], met(v("p5_max_ms"), at_most(g["p5_ms"]))),
    ]
    for daemon in ("api", "scheduler", "compute"):
        x = (v("p6_rss_mb") or {}).get(daemon)
        goal = g["p6_rss_mb"][daemon]
        rows.append(("P6 RSS %s" % daemon, num(x, "MB", "%.1f"), "", "",
                     "≤ %.0f MB" % goal, met(x, at_most(goal))))
    return [dict(zip(("figure", "mininova", "floor", "ratio", "goal", "met"), row))
            for row in rows]


def format_table(rows):
    head = ("figure", "mininova", "floor", "ratio", "goal", "met?")
    cells = [head] + [tuple(r[k] for k in ("figure", "mininova", "floor", "ratio", "goal",
                                           "met")) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    lines = []
    for n, c in enumerate(cells):
        lines.append("  ".join(s.ljust(w) for s, w in zip(c, widths)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_steps(steps):
    return "\n".join("  %-28s %8s → %8s ms  (n=%d)" % (
        s["event"], "" if s["start_ms"] is None else "%.0f" % s["start_ms"],
        "%.0f" % s["end_ms"], s["n"]) for s in steps)


def environment():
    """The host the figures come from; other guests running skew them."""
    with open("/proc/loadavg") as f:
        loadavg = f.read().split()[:3]
    try:
        conn = libvirt.open(URI)
        try:
            other_guests = len(conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE))
        finally:
            conn.close()
    except libvirt.libvirtError:
        other_guests = None
    return {"cpus": os.cpu_count(), "loadavg_at_start": loadavg,
            "other_guests_running_at_start": other_guests,
            "kernel": platform.release(), "python": platform.python_version(),
            "libvirt": libvirt.getVersion(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m bench.run",
                                description="mininova benchmarks against the physical floor")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: %s" % ", ".join("%s=%s" % kv for kv in QUICK.items()))
    p.add_argument("--samples", type=int, help="floor/P1/P5 samples (default 20)")
    p.add_argument("--p2-vms", type=int, help="concurrent POSTs of P2 (default 20)")
    p.add_argument("--p2-rounds", type=int, help="P2 rounds, floor and mininova "
                   "interleaved; the medians are reported (default 3)")
    p.add_argument("--p4-vms", type=int, help="VMs in the DB for GET (default 1000)")
    p.add_argument("--p4-gets", type=int, help="GET /v1/vms samples (default 200)")
    p.add_argument("--p4-idle-posts", type=int, help="POSTs without load (default 50)")
    p.add_argument("--p4-posts", type=int, help="POSTs under load (default 400)")
    p.add_argument("--p4-concurrency", type=int, help="concurrent clients (default 10)")
    p.add_argument("--fake-hosts", type=int, help="fake-driver hosts for P4 (default 3)")
    p.add_argument("--hosts", type=int, help="P3 simulated hosts (default 50)")
    p.add_argument("--vms", type=int, help="P3 VMs (default 1000)")
    p.add_argument("--sim-threads", type=int, default=32, help="P3 concurrent POSTs")
    p.add_argument("--skip-sim", action="store_true", help="no P3")
    p.add_argument("--only", default="p1,p2,p3,p4,p6",
                   help="comma-separated phases to run (default: all): p1 (with the floor "
                   "and P5), p2, p3, p4, p6")
    p.add_argument("--network", default="", help="libvirt network of the VMs' NIC, "
                   "'' (default): no NIC (nor on the floor's domains)")
    p.add_argument("--json", default=os.path.join(RESULTS, "latest.json"),
                   help="where to write the results (default bench/results/latest.json)")
    p.add_argument("--profile", action="store_true",
                   help="py-spy each daemon per phase into bench/results/profiles/")
    p.add_argument("--profile-dir", default=os.path.join(RESULTS, "profiles"),
                   help="where --profile writes (default bench/results/profiles)")
    p.add_argument("--profile-mode", choices=sorted(profiling.Profiler.MODES),
                   default="active", help="with --profile: active (default: running "
                   "threads, waits in C calls included), gil (CPU of Python only) or idle "
                   "(every thread); --profile also samples pg_stat_activity during P4 POSTs")
    args = p.parse_args(argv)
    args.only = {x.strip().lower() for x in args.only.split(",") if x.strip()}
    if args.skip_sim:
        args.only.discard("p3")
    defaults = QUICK if args.quick else FULL
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if min(args.samples, args.p2_vms, args.p2_rounds) < 1:
        p.error("--samples, --p2-vms and --p2-rounds must be at least 1")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if not os.path.exists(TINY):
        sys.exit("bench: %s is missing (deploy/build-tiny-image.sh builds it)" % TINY)
    started = time.monotonic()
    env = environment()
    workdir = tempfile.mkdtemp(prefix="mininova-bench-")
    bench = Bench(args, workdir)
    errors = {}

    def attempt(phase, fn):
        """Run one phase; a failure is reported and the run goes on (this host
        is shared: a broker or DB restart must not cost every figure)."""
        try:
            fn()
            return True
        except Exception as exc:
            errors[phase] = "%s: %s" % (type(exc).__name__, exc)
            log("%s FAILED:\n%s", phase, traceback.format_exc())
            return False
    try:
        try:
            if args.only & {"p1", "p2", "p4", "p6"} and attempt("start", bench.start):
                for phase, key, module in (("floor+P1+P5", "p1", phases_latency),
                                           ("P2", "p2", phase_burst), ("P4", "p4", phase_api),
                                           ("P6", "p6", phase_memory)):
                    if key in args.only:
                        attempt(phase, lambda: module.run(bench))
        finally:
            bench.stop()
        if "p3" in args.only:
            attempt("P3", lambda: phase_scale.run(bench))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    r = bench.results
    for key in REQUIRED_KEYS:   # every key, null when its phase failed
        r.setdefault(key, None)
    r["errors"] = errors
    r["run_time_s"] = round(time.monotonic() - started, 1)
    r["params"] = {k: sorted(v) if isinstance(v, set) else v for k, v in vars(args).items()
                   if k != "json"}
    with open("/proc/loadavg") as f:
        env["loadavg_at_end"] = f.read().split()[:3]
    r["environment"] = env
    r["goals"] = GOALS
    rows = table(r, sim="p3" in args.only)
    r["table"] = rows
    r["goals_met"] = {row["figure"]: row["met"] == "yes" for row in rows
                      if row["met"] in ("yes", "NO")}
    if bench.profiler.files:
        r["profiles"] = bench.profiler.files
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(r, f, indent=2)
    print()
    print(format_table(rows))
    if r.get("floor_steps_p50_ms"):
        print("\nfloor steps, median ms: %s" % ", ".join(
            "%s %.0f" % kv for kv in r["floor_steps_p50_ms"].items()))
    for key, title in (("p1_steps", "P1 steps, median ms after the API accepted the POST"),
                       ("p2_steps", "P2 steps, median ms after the API accepted each POST")):
        if r.get(key):
            print("\n%s (start → end):" % title)
            print(format_steps(r[key]))
    cpu = [("GET /v1/vms @%s" % r.get("p4_vms"), r.get("p4_get_api_cpu_ms"), "API"),
           ("POST /v1/vms", r.get("p4_post_api_cpu_ms"), "API")]
    cpu += [("a VM of the simulation", v, k) for k, v in (r.get("p3_cpu_ms_per_vm") or {}).items()]
    if any(v is not None for _, v, _ in cpu):
        print("\nCPU per request / VM: " + "; ".join(
            "%s %.1f ms (%s)" % (what, v, who) for what, v, who in cpu if v is not None))
    print("\n%d CPUs; load average at start %s, at end %s; %s other guests running at start; "
          "run time %.0f s; results in %s" % (
              env["cpus"], " ".join(env["loadavg_at_start"]), " ".join(env["loadavg_at_end"]),
              env["other_guests_running_at_start"], r["run_time_s"], args.json))
    for phase, error in errors.items():
        print("FAILED %s: %s" % (phase, error))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
