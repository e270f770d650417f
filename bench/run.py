"""Benchmarks against the physical floor, in one run (``make bench``).

    python -m bench.run               # the full run (3-5 minutes on 2 CPUs)
    python -m bench.run --quick       # a smoke run: fewer samples, a small simulation
    python -m bench.run --profile     # also py-spy profiles of the daemons, per phase
    python -m bench.run --only p4 --profile --profile-mode gil   # one phase, CPU profile

Brings up a private stack on the real services (mininova_lab.stack.Stack:
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
- P4 list: GET /v1/vms with 1000 VMs in the DB (rows inserted directly)
  while 5% of them change state each second through the conductor (P4's
  figure), also warm (nothing changing) and cold (every row changed), and
  ?limit=100 pages under the same churn; each request interleaved with the
  same SQL (same columns) in psycopg (bench/phase_list.py);
- P4 POST: POST /v1/vms latency under a concurrent closed-loop load (VMs
  built on fake-driver hosts, the real host disabled meanwhile), against one
  INSERT + COMMIT in psycopg;
- P5: external ``virsh destroy`` -> SHUTOFF in the API, against virsh itself;
- P10: ``openstack server create --wait`` and openstacksdk's
  create_server(wait=True) -> ACTIVE beside POST /v1/vms -> ACTIVE, the
  facade's server-side time per /compute request, and a Rally-style
  boot-and-delete loop with openstacksdk (bench/phase_openstack.py);
- P8 snapshot: POST {"snapshot"} of a running tiny guest -> the image
  active, against managedSave + qemu-img convert of the overlay + restore
  of a floor domain (bench/p8_snapshot.py); P8 moves: a cold migration and a resize
  between two lab sim hosts beside the raw copy + define + start (bench/p8_moves.py);
- P6: resident memory (VmRSS) of each daemon after all of the above;
- P3: the scale simulation (bench.scale_sim), after the stack is gone;
- P9: POST -> ACTIVE one at a time and the burst of P3 (smaller), each on the
  fake driver, on a 3-node RabbitMQ cluster with quorum queues against the
  machine's one-node broker with classic queues (bench/phase_ha.py);
- P7: live migration of a running tiny guest between two lab hosts (sim
  hosts, a stack of its own), against the same virsh migrate done directly
  (bench/p7_live_migration.py).

Before each phase the machine's load is printed and the CPU others use
over one second sampled (bench/quiet.py): a phase waits up to --quiet-wait
seconds for at most --busy-threshold cores of others' use (another bench, a
test run, a guest left running) and is refused (FAILED, with the top
consumers named) when the machine stays busy, unless --busy-ok.

A VM's status is watched in its DB row (a cheap primary-key SELECT every
5 ms, see DB_POLL) and then confirmed through the API, whose answer times
it: polling the API itself would take CPU from the guests being started.

This module is the command line and the JSON; bench/report.py the table
and the verdicts; bench/harness.py the stack and the helpers; one module per
phase: phases_latency.py (floor, P1, P5), phase_burst.py (P2),
phase_list.py (P4 list, with churn.py), phase_api.py (P4 POST),
phase_memory.py (P6), phase_scale.py (P3). bench/README.md explains each
figure and its floor.

Prints one table (figure, mininova, floor, ratio, goal, met?) and writes the
same as JSON to bench/results/latest.json (or --json PATH). A phase that
fails is reported (its rows FAILED, its goals NO in the table and in
``goals_met``) and the run goes on. Exit status: 0 when every phase asked
for ran, whether its goals are met or not; 1 when one failed.
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

from bench import (p7_live_migration, p8_moves, p8_snapshot, phase_api, phase_burst,
                   phase_ha, phase_list, phase_memory, phase_openstack, phase_scale,
                   phases_latency, profiling, quiet, report)
from bench.harness import TINY, URI, Bench, log
from common import exception

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results")

FULL = dict(samples=20, p2_vms=20, p2_rounds=3, p4_vms=1000, p4_gets=200, p4_idle_posts=50,
            p4_posts=400, p4_concurrency=10, p4_churn_pct=5.0, p4_get_interval=0.2,
            fake_hosts=3, hosts=50, vms=1000, p10_samples=10, p10_loops=10, p7_samples=6,
            p9_samples=20, p9_hosts=10, p9_vms=200)
QUICK = dict(samples=5, p2_vms=5, p2_rounds=1, p4_vms=1000, p4_gets=50, p4_idle_posts=10,
             p4_posts=100, p4_concurrency=10, p4_churn_pct=5.0, p4_get_interval=0.2,
             fake_hosts=1, hosts=10, vms=200, p10_samples=2, p10_loops=2, p7_samples=2,
             p9_samples=2, p9_hosts=1, p9_vms=10)
# The stack's phases, in order: (name, --only key, module).
# P10 runs before P4, which fills the DB and moves the builds to fake hosts.
STACK_PHASES = (("floor+P1+P5", "p1", phases_latency), ("P8 snapshot", "p8", p8_snapshot),
                ("P8 moves", "p8", p8_moves),
                ("P2", "p2", phase_burst),
                ("P10", "p10", phase_openstack), ("P4 list", "p4", phase_list),
                ("P4 POST", "p4", phase_api),
                ("P6", "p6", phase_memory))


class MachineBusy(Exception):
    """Others use the CPU: a phase measured now would not be comparable."""


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
    p.add_argument("--p4-gets", type=int, help="GET /v1/vms samples, each of warm, churn "
                   "and ?limit=100 pages; a quarter of it cold (default 200)")
    p.add_argument("--p4-churn-pct", type=float, help="percent of the VMs changing state "
                   "each second while the list is measured (default 5)")
    p.add_argument("--p4-get-interval", type=float, help="mean seconds between list "
                   "requests under churn (exponential gaps; default 0.2): back-to-back "
                   "GETs would each see only the few VMs changed since the previous one")
    p.add_argument("--p4-idle-posts", type=int, help="POSTs without load (default 50)")
    p.add_argument("--p4-posts", type=int, help="POSTs under load (default 400)")
    p.add_argument("--p4-concurrency", type=int, help="concurrent clients (default 10)")
    p.add_argument("--fake-hosts", type=int, help="fake-driver hosts for P4 (default 3)")
    p.add_argument("--p10-samples", type=int, help="P10 creates of each path (/v1, CLI, "
                   "SDK), interleaved; the first of each is reported as cold (default 10)")
    p.add_argument("--p10-loops", type=int, help="P10 boot+delete loops with openstacksdk "
                   "(default 10)")
    p.add_argument("--p7-samples", type=int, help="P7 live migrations of each (mininova, "
                   "virsh), interleaved, after a warm-up round trip (default 6)")
    p.add_argument("--hosts", type=int, help="P3 simulated hosts (default 50)")
    p.add_argument("--vms", type=int, help="P3 VMs (default 1000)")
    p.add_argument("--sim-threads", type=int, default=32, help="P3 concurrent POSTs")
    p.add_argument("--skip-sim", action="store_true", help="no P3")
    p.add_argument("--p9-samples", type=int, help="P9 creates one at a time on each bus "
                   "(default 20)")
    p.add_argument("--p9-hosts", type=int, help="P9 burst: simulated hosts (default 10)")
    p.add_argument("--p9-vms", type=int, help="P9 burst: VMs (default 200)")
    p.add_argument("--only", default="p1,p2,p3,p4,p6,p8,p10,p7,p9",
                   help="comma-separated phases to run (default: all): p1 (with the floor "
                   "and P5), p2, p3, p4, p6, p8 (P8 snapshot and moves), p10, p7, p9 (3-node "
                   "quorum queues against 1-node classic)")
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
    p.add_argument("--busy-threshold", type=float, default=0.25,
                   help="CPU cores others may use (over 1 s, before a phase) for the "
                   "machine to count as quiet (default 0.25)")
    p.add_argument("--quiet-wait", type=float, default=120,
                   help="seconds a phase waits for a quiet machine before it is refused "
                   "(default 120)")
    p.add_argument("--busy-ok", action="store_true",
                   help="measure a phase at once, busy machine or not (its load is reported)")
    args = p.parse_args(argv)
    args.only = {x.strip().lower() for x in args.only.split(",") if x.strip()}
    if args.skip_sim:
        args.only.discard("p3")
    defaults = QUICK if args.quick else FULL
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if min(args.samples, args.p2_vms, args.p2_rounds, args.p10_loops, args.p7_samples,
           args.p9_samples, args.p9_hosts, args.p9_vms) < 1:
        p.error("--samples, --p2-vms, --p2-rounds, --p10-loops, --p7-samples and --p9-* "
                "must be at least 1")
    if args.p10_samples < 2:
        p.error("--p10-samples must be at least 2 (the first of each path is the cold one)")
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
        is shared: a broker or DB restart must not cost every figure). A phase
        (not the start) is refused while others use the CPU (bench/quiet.py)."""
        try:
            if phase != "start":
                own = [os.getpid()] + list(bench.daemon_pids().values() if bench.stack else ())
                load = quiet.wait_quiet(own, args.busy_threshold,
                                        0 if args.busy_ok else args.quiet_wait, log)
                load["reference_loop_ms"] = quiet.reference_loop_ms()
                bench.results.setdefault("load_before", {})[phase] = load
                log("%s: load average %s; CPU over 1 s: %.2f cores in all, %.2f the bench's, "
                    "%.2f others', %.2f stolen; reference loop %.0f ms%s", phase,
                    " ".join(load["loadavg"] or ()), load["machine"], load["own"],
                    load["foreign"], load["steal"], load["reference_loop_ms"],
                    "" if load["quiet"] else " (%s)" % quiet.describe_top(load["top"]))
                if not load["quiet"] and not args.busy_ok:
                    raise MachineBusy(
                        "refused: %.2f cores used by others after waiting %.0f s (%s); "
                        "figures would not be comparable (--busy-ok measures anyway)"
                        % (load["foreign"], load["waited_s"], quiet.describe_top(load["top"])))
            fn()
            return True
        except MachineBusy as exc:
            errors[phase] = str(exc)
            log("%s %s", phase, exc)
            return False
        except Exception as exc:
            errors[phase] = exception.describe(exc)
            log("%s FAILED:\n%s", phase, traceback.format_exc())
            return False
    try:
        try:
            if args.only & {"p1", "p2", "p4", "p6", "p8", "p10"} and attempt("start",
                                                                            bench.start):
                for phase, key, module in STACK_PHASES:
                    if key in args.only:
                        attempt(phase, lambda: module.run(bench))
        finally:
            bench.stop()
        if "p3" in args.only:
            attempt("P3", lambda: phase_scale.run(bench))
        if "p7" in args.only:
            attempt("P7", lambda: p7_live_migration.run(bench))
        if "p9" in args.only:
            attempt("P9", lambda: phase_ha.run(bench))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    r = bench.results
    for key in report.REQUIRED_KEYS:   # every key, null when its phase failed
        r.setdefault(key, None)
    r["errors"] = errors
    r["run_time_s"] = round(time.monotonic() - started, 1)
    r["params"] = {k: sorted(v) if isinstance(v, set) else v for k, v in vars(args).items()
                   if k != "json"}
    with open("/proc/loadavg") as f:
        env["loadavg_at_end"] = f.read().split()[:3]
    r["environment"] = env
    r["goals"] = report.GOALS
    status = report.phase_status(args.only, errors)
    r["phases"] = status
    rows = report.table(r, status)
    r["table"] = rows
    r["goals_met"] = report.goals_met(rows)
    if bench.profiler.files:
        r["profiles"] = bench.profiler.files
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(r, f, indent=2)
    print()
    print(report.format_table(rows))
    not_run = [name for name, st in status.items() if st == report.NOT_RUN]
    if not_run:
        print("not run (--only): %s" % ", ".join(not_run))
    if r.get("p4_list"):
        print("\nP4 list, how each figure was measured (floor: the same SQL, interleaved):")
        for name, f in r["p4_list"].items():
            print("  %-6s %s; n=%d, %d failed" % (name, f["conditions"], f["n"], f["failures"]))
    if r.get("p8_snapshot_steps_p50_ms"):
        print("\nP8 snapshot steps (the VM's action timeline), median ms: %s" % ", ".join(
            "%s %.0f" % kv for kv in r["p8_snapshot_steps_p50_ms"].items()))
    for kind in ("migrate", "resize"):
        if r.get("p8_%s_steps_p50_ms" % kind):
            print("P8 %s steps (the VM's action timeline), median ms: %s" % (kind, ", ".join(
                "%s %.0f" % kv for kv in r["p8_%s_steps_p50_ms" % kind].items())))
    if r.get("floor_steps_p50_ms"):
        print("\nfloor steps, median ms: %s" % ", ".join(
            "%s %.0f" % kv for kv in r["floor_steps_p50_ms"].items()))
    for key, title in (("p1_steps", "P1 steps, median ms after the API accepted the POST"),
                       ("p2_steps", "P2 steps, median ms after the API accepted each POST")):
        if r.get(key):
            print("\n%s (start → end):" % title)
            print(report.format_steps(r[key]))
    cpu = [("GET /v1/vms @%s + a page, under churn" % r.get("p4_vms"),
            r.get("p4_round_api_cpu_ms"), "API"),
           ("GET /v1/vms @%s warm" % r.get("p4_vms"), r.get("p4_get_warm_api_cpu_ms"), "API"),
           ("VM state change", (r.get("p4_churn") or {}).get("conductor_cpu_ms_per_change"),
            "conductor"),
           ("POST /v1/vms", r.get("p4_post_api_cpu_ms"), "API")]
    cpu += [("a VM of the simulation", v, k) for k, v in (r.get("p3_cpu_ms_per_vm") or {}).items()]
    cpu += [("a POST of the load", v, k) for k, v in (r.get("p4_post_cpu_ms_per_post") or {}).items()]
    if any(v is not None for _, v, _ in cpu):
        print("\nCPU per request / VM: " + "; ".join(
            "%s %.1f ms (%s)" % (what, v, who) for what, v, who in cpu if v is not None))
    if r.get("p10"):
        print("\nP10, the API's own time per request by surface, each path "
              "(from its request-duration histogram):")
        print(report.format_p10(r["p10"]))
    print("\n%d CPUs; load average at start %s, at end %s; %s other guests running at start; "
          "run time %.0f s; results in %s" % (
              env["cpus"], " ".join(env["loadavg_at_start"]), " ".join(env["loadavg_at_end"]),
              env["other_guests_running_at_start"], r["run_time_s"], args.json))
    refs = {phase: load["reference_loop_ms"]
            for phase, load in (r.get("load_before") or {}).items()}
    if refs:
        print("the machine's speed before each phase (CPU ms of a loop of %d additions in "
              "Python; CPU figures above scale with it): %s" % (
                  quiet.REFERENCE_LOOP, ", ".join("%s %.0f" % kv for kv in refs.items())))
    for phase, error in errors.items():
        print("FAILED %s: %s" % (phase, error))
    return report.exit_status(status) or (1 if errors else 0)  # errors: also the start


if __name__ == "__main__":
    sys.exit(main())
