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

Prints one table (figure, mininova, floor, ratio, goal, met?) and writes the
same as JSON to bench/results/latest.json (or --json PATH). Benchmarks
report; the exit status is 0 whether goals are met or not (1 on a failure of
the harness itself).
"""
import argparse
import concurrent.futures
import contextlib
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid

import libvirt
import sqlalchemy as sa

from bench import floor as bfloor
from bench import load, profiling, scale_sim
from common import states
from common.db import models
from nova_compute.virt.libvirt import host as vhost
from nova_compute.virt.libvirt import imagebackend
from tests.functional.stack import Stack, qemu_img_create
from tests.waiting import wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results")
TINY = os.environ.get("MININOVA_TINY_IMAGE", "/var/cache/mininova/tiny.qcow2")
URI = "qemu:///system"

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

# How the harness sees a VM reach a status (P1, P2, P5) without loading the
# host it measures (2 CPUs here: an API polled every few ms would take CPU
# from the QEMU being started): it polls the row's state in PostgreSQL, one
# primary-key SELECT every DB_POLL s (~0.2 ms of CPU), and once the row has
# the status it reads the VM through the API; the time that GET answers
# with the status is the one taken. Resolution: DB_POLL/2 on average, plus
# one GET.
DB_POLL = 0.005
API_POLL = 0.05       # only for the untimed waits (warm-ups)
NANO_FLAVOR = ("bench.nano", 1, 16, 1)   # name, vcpus, MB, GB: 250 fit one fake host


def log(msg, *args):
    print("bench: " + (msg % args if args else msg), file=sys.stderr, flush=True)


def ms(seconds):
    return None if seconds is None else round(seconds * 1000.0, 1)


def pct(values, p):
    return scale_sim.percentile(values, p)


def rss_mb(pid):
    """(VmRSS, VmHWM) of a process in MB, from /proc/<pid>/status."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = round(int(value.split()[0]) / 1024.0, 1)
    return out.get("VmRSS"), out.get("VmHWM")


class Bench:
    def __init__(self, args, workdir):
        self.args = args
        self.workdir = workdir
        self.results = {}
        self.profiler = profiling.Profiler(args.profile_dir,
                                           enabled=args.profile, mode=args.profile_mode)
        self.stack = None
        self.floor = None
        self.engine = None
        self.conn = None
        self._poll_conn = None

    # -- helpers ---------------------------------------------------------------

    def client(self):
        return load.Client(self.stack.url, self.stack.http.headers["X-Auth-Token"])

    def pids(self, *names):
        return {n: self.stack.procs[n].pid for n in names if n in self.stack.procs}

    def daemon_pids(self):
        return self.pids("api", "scheduler", "compute")

    def post_vm(self, client, name, image="tiny", flavor="m1.tiny"):
        seconds, status, body, headers = client.timed(
            "POST", "/v1/vms", {"name": name, "image": image, "flavor": flavor})
        if status != 202:
            raise RuntimeError("POST /v1/vms -> %s: %s" % (status, body))
        return seconds, body["vm"]["id"], headers.get("X-Request-Id")

    def db_statuses(self, cur, ids):
        """{id: API status} of live VMs, straight from their rows."""
        cur.execute("SELECT id, vm_state, task_state, fault FROM instances "
                    "WHERE id = ANY(%s) AND deleted_at IS NULL", (list(ids),))
        out = {}
        for vm_id, vm_state, task_state, fault in cur.fetchall():
            out[vm_id] = states.status(vm_state, task_state)
            if out[vm_id] == "ERROR":
                raise RuntimeError("VM %s went ERROR: %s" % (vm_id, fault))
        return out

    def seen_in_api(self, client, ids, status, timeout=120, list_=False):
        """Wait until every VM of ``ids`` has ``status`` in its row (DB_POLL),
        then until the API shows it (GET /v1/vms/<id>, or GET /v1/vms with
        ``list_``); the monotonic time the API's answer showed it."""
        ids = set(ids)
        deadline = time.monotonic() + timeout
        if self._poll_conn is None:  # one connection for the whole run
            self._poll_conn = self.engine.raw_connection()
            self._poll_conn.driver_connection.autocommit = True
        with self._poll_conn.cursor() as cur:
            while True:
                rows = self.db_statuses(cur, ids)
                if all(rows.get(i) == status for i in ids):
                    if list_:
                        _, body, _ = client.request("GET", "/v1/vms")
                        shown = {v["id"]: v["status"] for v in body["vms"]}
                    else:
                        shown = {}
                        for i in ids:
                            code, body, _ = client.request("GET", "/v1/vms/" + i)
                            shown[i] = body["vm"]["status"] if code == 200 else None
                    seen = time.monotonic()
                    if all(shown.get(i) == status for i in ids):
                        return seen
                if time.monotonic() > deadline:
                    raise RuntimeError("%d VM(s) not %s after %d s (rows: %s)" % (
                        len(ids), status, timeout, sorted(set(rows.values()))))
                time.sleep(DB_POLL)

    def wait_status(self, client, vm_id, status, timeout=120, interval=API_POLL):
        """Poll GET /v1/vms/<id> until ``status`` (untimed waits)."""
        deadline = time.monotonic() + timeout
        while True:
            code, body, _ = client.request("GET", "/v1/vms/" + vm_id)
            seen = time.monotonic()
            vm = body["vm"] if code == 200 else None
            if vm is not None and vm["status"] == status:
                return seen
            if vm is not None and vm["status"] == "ERROR" and status != "ERROR":
                raise RuntimeError("VM %s went ERROR: %s" % (vm_id, vm["fault"]))
            if seen > deadline:
                raise RuntimeError("VM %s not %s after %d s (now %s)" % (
                    vm_id, status, timeout, vm and vm["status"]))
            time.sleep(interval)

    def delete_and_wait(self, ids, timeout=180):
        ids = list(ids)
        if not ids:
            return
        client = self.client()
        for vm_id in ids:
            client.request("DELETE", "/v1/vms/" + vm_id)

        def gone():
            _, body, _ = client.request("GET", "/v1/vms")
            live = {v["id"] for v in body["vms"]} & set(ids)
            return not live
        wait_for(gone, timeout, interval=0.1, what="%d VMs to be deleted" % len(ids))
        client.close()

    # -- set-up ------------------------------------------------------------------

    def start(self):
        a = self.args
        log("starting a private stack (RabbitMQ vhost, PostgreSQL DB, libvirt compute)")
        # virt_type pinned to qemu (TCG): never type='kvm' here.
        self.stack = Stack(os.path.join(self.workdir, "stack"), compute_driver="libvirt",
                           network=a.network, debug=False, extra_conf="virt_type = qemu\n")
        os.makedirs(self.stack.workdir, exist_ok=True)
        self.stack.start()
        self.results["stack_host"] = self.stack.host
        self.engine = sa.create_engine("postgresql+psycopg2://postgres@127.0.0.1/"
                                       + self.stack.db_name)
        self.tiny = self.stack.add_image("tiny", TINY)
        self.conn = libvirt.open(URI)
        flavors = {f["name"]: f for f in self.stack.get("/v1/flavors").json()["flavors"]}
        self.flavor = flavors["m1.tiny"]

        # Warm-up (untimed): fetches the image into compute's cache, opens pools.
        client = self.client()
        _, vm_id, _ = self.post_vm(client, "warmup")
        self.wait_status(client, vm_id, "ACTIVE")
        mininova_settings = bfloor.settings(self.conn.lookupByUUIDString(vm_id).XMLDesc(0))
        base = os.path.join(self.stack.cache_path, self.tiny["id"])

        floor_dir = os.path.join(self.workdir, "floor")
        os.makedirs(floor_dir, exist_ok=True)
        # Chosen as the driver chooses, then checked against the real domain.
        cache = "none" if imagebackend.supports_direct_io(floor_dir) else "writeback"
        self.floor = bfloor.Floor(URI, base, floor_dir, vhost.detect_virt_type("qemu"),
                                  self.flavor["ram"], self.flavor["vcpus"], self.flavor["disk"],
                                  cache, network=a.network, tag=self.stack.tag)
        _, floor_id = self.floor.boot()
        floor_settings = bfloor.settings(self.floor.domain_xml(floor_id))
        self.floor.destroy(floor_id)
        if floor_settings != mininova_settings:
            diff = {k: (mininova_settings[k], floor_settings.get(k)) for k in mininova_settings
                    if mininova_settings[k] != floor_settings.get(k)}
            raise RuntimeError("the floor's domain differs from mininova's: %s" % diff)
        self.results["domain_settings"] = mininova_settings
        log("same domain settings for floor and mininova: %s", mininova_settings)
        self.delete_and_wait([vm_id])
        client.close()

    # -- floor + P1 + P5 -----------------------------------------------------------

    def p1_p5(self):
        n = self.args.samples
        log("floor / P1 / P5: %d samples each, interleaved", n)
        client = self.client()
        floor_s, p1_s, p5_s, virsh_s, post_s, vm_ids = [], [], [], [], [], []
        floor_steps = []
        with self.profiler.phase("p1", self.daemon_pids()):
            for i in range(n):
                steps = {}
                seconds, floor_id = self.floor.boot(steps=steps)
                self.floor.destroy(floor_id)
                floor_s.append(seconds)
                floor_steps.append(steps)

                t0 = time.monotonic()
                post, vm_id, _ = self.post_vm(client, "p1-%03d" % i)
                p1_s.append(self.seen_in_api(client, [vm_id], "ACTIVE") - t0)
                post_s.append(post)
                vm_ids.append(vm_id)

                # P5: an external destroy, seen in the API as SHUTOFF.
                t0 = time.monotonic()
                proc = subprocess.run(["virsh", "-c", URI, "destroy", "mininova-" + vm_id],
                                      capture_output=True, text=True)
                virsh_done = time.monotonic()
                if proc.returncode != 0:
                    raise RuntimeError("virsh destroy failed: %s" % proc.stderr)
                p5_s.append(self.seen_in_api(client, [vm_id], "SHUTOFF", timeout=30) - t0)
                virsh_s.append(virsh_done - t0)
                self.delete_and_wait([vm_id])
                log("  sample %d/%d: floor %.0f ms, P1 %.0f ms, P5 %.0f ms", i + 1, n,
                    floor_s[-1] * 1000, p1_s[-1] * 1000, p5_s[-1] * 1000)
        client.close()
        r = self.results
        r["floor_samples_ms"] = [ms(s) for s in floor_s]
        r["floor_p50_ms"] = ms(pct(floor_s, 50))
        r["floor_p95_ms"] = ms(pct(floor_s, 95))
        r["floor_steps_p50_ms"] = {k: ms(statistics.median(st[k] for st in floor_steps))
                                   for k in floor_steps[0]}
        r["p1_samples_ms"] = [ms(s) for s in p1_s]
        r["p1_p50_ms"] = ms(pct(p1_s, 50))
        r["p1_p95_ms"] = ms(pct(p1_s, 95))
        r["p1_overhead_ms"] = round(r["p1_p50_ms"] - r["floor_p50_ms"], 1)
        r["p1_post_p50_ms"] = ms(pct(post_s, 50))
        r["p1_steps"] = self.breakdown(vm_ids)
        r["p5_samples_ms"] = [ms(s) for s in p5_s]
        r["p5_p50_ms"] = ms(pct(p5_s, 50))
        r["p5_max_ms"] = ms(max(p5_s))
        r["p5_virsh_p50_ms"] = ms(pct(virsh_s, 50))
        r["p5_virsh_max_ms"] = ms(max(virsh_s))

    def breakdown(self, vm_ids):
        """Median offsets (ms after the API accepted the POST) at which each
        recorded step of the create action started and ended, and when the
        conductor marked the VM launched."""
        with self.engine.connect() as c:
            rows = c.execute(sa.text(
                "SELECT a.instance_id, e.event, "
                "extract(epoch FROM e.start_time - a.start_time), "
                "extract(epoch FROM e.finish_time - a.start_time) "
                "FROM instance_actions a JOIN instance_action_events e ON e.action_id = a.id "
                "WHERE a.action = 'create' AND a.instance_id = ANY(:ids)"),
                {"ids": list(vm_ids)}).all()
            launched = [float(x) for (x,) in c.execute(sa.text(
                "SELECT extract(epoch FROM launched_at - created_at) FROM instances "
                "WHERE id = ANY(:ids) AND launched_at IS NOT NULL"), {"ids": list(vm_ids)})]
        by_event = {}
        for _, event, start, finish in rows:
            by_event.setdefault(event, []).append((float(start), float(finish or start)))
        self.last_build_starts = sorted(ms(s) for s, _ in by_event.get("image fetched", []))
        steps = []
        for event, spans in by_event.items():
            steps.append({"event": event,
                          "start_ms": ms(statistics.median(s for s, _ in spans)),
                          "end_ms": ms(statistics.median(f for _, f in spans)),
                          "n": len(spans)})
        steps.sort(key=lambda s: (s["start_ms"], s["end_ms"]))
        if launched:
            steps.append({"event": "launched_at (conductor)", "start_ms": None,
                          "end_ms": ms(statistics.median(launched)), "n": len(launched)})
        return steps

    # -- P2 ----------------------------------------------------------------------

    def p2(self):
        """Rounds of: N floor boots from N threads, then N concurrent POSTs;
        the median wall time of each (interleaved, so both see the same host)."""
        n, rounds = self.args.p2_vms, self.args.p2_rounds
        log("P2: %d round(s) of %d boots in parallel: floor (%d threads), then mininova "
            "(%d POSTs)", rounds, n, n, n)
        floor_walls, walls, posts, all_ids = [], [], [], []
        for round_ in range(rounds):
            floor_wall, _ = self.floor.parallel(n)
            wall, posted, ids = self.p2_round(n, round_)
            all_ids += ids
            floor_walls.append(floor_wall)
            walls.append(wall)
            posts.append(posted)
            log("  round %d: floor all %d RUNNING in %.2f s; mininova %d POSTs answered in "
                "%.2f s, all ACTIVE in %.2f s", round_ + 1, n, floor_wall, n, posted, wall)
        r = self.results
        r["p2_vms"] = n
        r["p2_rounds_s"] = [round(w, 2) for w in walls]
        r["p2_floor_rounds_s"] = [round(w, 2) for w in floor_walls]
        r["p2_wall_s"] = round(statistics.median(walls), 2)
        r["p2_floor_wall_s"] = round(statistics.median(floor_walls), 2)
        r["p2_posts_s"] = round(statistics.median(posts), 2)
        r["p2_ratio"] = round(r["p2_wall_s"] / r["p2_floor_wall_s"], 2)
        r["p2_steps"] = self.breakdown(all_ids)
        # When compute started each build (its first step), ms after the POST
        # was accepted, all rounds: builds beyond [DEFAULT] rpc_workers wait.
        r["p2_build_starts_ms"] = self.last_build_starts

    def p2_round(self, n, round_):
        ids = [None] * n
        barrier = threading.Barrier(n + 1)
        clients = [self.client() for _ in range(n)]
        for c in clients:
            c.request("GET", "/v1")

        def post(i):
            barrier.wait(timeout=60)
            _, ids[i], _ = self.post_vm(clients[i], "p2-%d-%03d" % (round_, i))

        poller = self.client()
        with self.profiler.phase("p2-%d" % (round_ + 1), self.daemon_pids()):
            with concurrent.futures.ThreadPoolExecutor(n) as pool:
                futures = [pool.submit(post, i) for i in range(n)]
                barrier.wait(timeout=60)
                t0 = time.monotonic()
                for f in futures:
                    f.result()
            posted = time.monotonic() - t0

            wall = self.seen_in_api(poller, ids, "ACTIVE", timeout=300, list_=True) - t0
        for c in clients + [poller]:
            c.close()
        self.delete_and_wait(ids)
        return wall, posted, ids

    # -- P4 ----------------------------------------------------------------------

    def admin_project_id(self):
        with self.engine.connect() as c:
            return c.execute(sa.text("SELECT project_id FROM users WHERE name = 'admin'")).scalar()

    def p4(self):
        a = self.args
        project = self.admin_project_id()
        client = self.client()
        _, body, _ = client.request("GET", "/v1/vms")
        live = len(body["vms"])
        add = max(0, a.p4_vms - live)
        log("P4: inserting %d VM rows (project %s) into the stack's DB", add, project)
        now = models.utcnow()
        rows = [dict(id=str(uuid.uuid4()), name="p4-row-%05d" % i, project_id=project,
                     user_id=None, image_id=self.tiny["id"], flavor_id=self.flavor["id"],
                     vcpus=self.flavor["vcpus"], memory_mb=self.flavor["ram"],
                     root_gb=self.flavor["disk"], host="bench-phantom", vm_state="active",
                     task_state=None, power_state="running",
                     mac_address="52:54:00:%02x:%02x:%02x" % tuple(os.urandom(3)),
                     created_at=now, updated_at=now, launched_at=now)
                for i in range(add)]
        with self.engine.begin() as c:
            if rows:
                c.execute(sa.insert(models.Instance.__table__), rows)
        with self.engine.connect() as c:  # fresh statistics for the planner
            c.execution_options(isolation_level="AUTOCOMMIT").execute(
                sa.text("ANALYZE instances"))

        # GET /v1/vms, sequential.
        _, body, _ = client.request("GET", "/v1/vms")
        count = len(body["vms"])
        if count != a.p4_vms:
            raise RuntimeError("P4: GET /v1/vms shows %d VMs, not %d" % (count, a.p4_vms))
        gets = []
        api = {"api": self.stack.procs["api"]}
        with self.profiler.phase("p4-get", self.pids("api")):
            cpu0 = scale_sim.cpu_seconds(api)["api"]
            for _ in range(a.p4_gets):
                seconds, status, _, _ = client.timed("GET", "/v1/vms")
                if status != 200:
                    raise RuntimeError("P4: GET /v1/vms -> %s" % status)
                gets.append(seconds)
            get_cpu = (scale_sim.cpu_seconds(api)["api"] - cpu0) / len(gets)
        sql = self.sql_floor_get(project, a.p4_gets)

        # POST /v1/vms: onto fake-driver hosts, the real one disabled.
        self.setup_fake_hosts(client)
        idle = []
        for i in range(a.p4_idle_posts):
            seconds, _, _ = self.post_vm(client, "p4-idle-%04d" % i, image="blank",
                                         flavor=NANO_FLAVOR[0])
            idle.append(seconds)
        log("P4: %d POSTs from %d concurrent clients", a.p4_posts, a.p4_concurrency)
        pids = self.pids("api", "scheduler", *[n for n in self.stack.procs if n.startswith(
            "compute-")])
        pg = (profiling.PgActivity(self.engine, self.stack.db_name) if a.profile
              else contextlib.nullcontext())
        with self.profiler.phase("p4-post", pids), pg:
            cpu0 = scale_sim.cpu_seconds(api)["api"]
            wall, results = load.closed_loop(
                self.stack.url, self.stack.http.headers["X-Auth-Token"], a.p4_posts,
                a.p4_concurrency, lambda i: ("POST", "/v1/vms", {
                    "name": "p4-load-%05d" % i, "image": "blank", "flavor": NANO_FLAVOR[0]}))
        if a.profile:
            self.results["p4_post_pg_activity"] = pg.top()
            log("P4: PostgreSQL backends during the POST load (mean count):\n%s",
                "\n".join("  %5.2f  %s" % (n, what) for what, n in pg.top()))
        post_cpu = (scale_sim.cpu_seconds(api)["api"] - cpu0) / max(1, len(results))
        failed = [(s, b) for _, _, s, b in results if s != 202]
        if failed:
            raise RuntimeError("P4: %d POSTs failed, e.g. %s" % (len(failed), failed[0]))
        posts = [s for _, s, _, _ in results]
        settled = self.wait_settled(project)
        sql_post = self.sql_floor_post(project, 50 if a.p4_gets >= 50 else a.p4_gets)
        client.close()
        r = self.results
        r.update({
            "p4_vms": count,
            "p4_get_p50_ms": ms(pct(gets, 50)), "p4_get_p99_ms": ms(pct(gets, 99)),
            "p4_get_max_ms": ms(max(gets)),
            # CPU time of the API process per request (user + system, 10 ms
            # ticks averaged): what no amount of idle host makes faster.
            "p4_get_api_cpu_ms": ms(get_cpu), "p4_post_api_cpu_ms": ms(post_cpu),
            "p4_get_sql_p50_ms": ms(pct(sql, 50)), "p4_get_sql_p99_ms": ms(pct(sql, 99)),
            "p4_post_concurrency": a.p4_concurrency, "p4_posts": len(posts),
            "p4_post_p50_ms": ms(pct(posts, 50)), "p4_post_p99_ms": ms(pct(posts, 99)),
            "p4_post_rate_per_s": round(len(posts) / wall, 1),
            "p4_post_idle_p50_ms": ms(pct(idle, 50)) if idle else None,
            "p4_post_sql_p50_ms": ms(pct(sql_post, 50)),
            "p4_post_sql_p99_ms": ms(pct(sql_post, 99)),
            "p4_built": settled,
        })

    def sql_floor_get(self, project, n):
        """The SELECT behind GET /v1/vms (same filter and order), straight
        through psycopg2, rows fetched as tuples."""
        raw = self.engine.raw_connection()
        try:
            cur = raw.cursor()
            samples = []
            for _ in range(n):
                t = time.perf_counter()
                cur.execute("SELECT * FROM instances WHERE deleted_at IS NULL AND project_id = %s "
                            "ORDER BY created_at, id", (project,))
                cur.fetchall()
                raw.commit()
                samples.append(time.perf_counter() - t)
            return samples
        finally:
            raw.close()

    def sql_floor_post(self, project, n):
        """One INSERT of a VM row and its COMMIT, straight through psycopg2
        (the rows are removed after)."""
        raw = self.engine.raw_connection()
        names = []
        try:
            cur = raw.cursor()
            samples = []
            for i in range(n):
                name = "p4-sql-%04d" % i
                names.append(name)
                t = time.perf_counter()
                cur.execute(
                    "INSERT INTO instances (id, name, project_id, image_id, flavor_id, vcpus, "
                    "memory_mb, root_gb, vm_state, task_state, power_state, created_at, "
                    "updated_at) VALUES (%s, %s, %s, %s, %s, 1, 16, 1, 'building', "
                    "'scheduling', 'nostate', now(), now())",
                    (str(uuid.uuid4()), name, project, self.tiny["id"], self.flavor["id"]))
                raw.commit()
                samples.append(time.perf_counter() - t)
            cur.execute("DELETE FROM instances WHERE name = ANY(%s)", (names,))
            raw.commit()
            return samples
        finally:
            raw.close()

    def setup_fake_hosts(self, client):
        a = self.args
        base = os.path.join(self.workdir, "blank.qcow2")
        qemu_img_create(base, "1G")
        self.stack.add_image("blank", base)
        self.stack.manage("flavor", "create", NANO_FLAVOR[0], "--vcpus", str(NANO_FLAVOR[1]),
                          "--ram", str(NANO_FLAVOR[2]), "--disk", str(NANO_FLAVOR[3]))
        conf = ("compute_driver = fake\nreserved_host_memory_mb = 0\nsync_interval = 300\n"
                "heartbeat_interval = 5\n")
        names = ["bench-fake%d" % i for i in range(a.fake_hosts)]
        for name in names:
            self.stack.start_extra_compute(name, extra_conf=conf, wait=False)
        wait_for(lambda: set(names) <= self.stack.computes_up(), 60, interval=0.2,
                 what="the fake compute hosts")
        self.stack.set_disabled(self.stack.host, True)
        wait_for(lambda: all(s["status"] == "disabled" for s in
                             self.stack.get("/v1/services").json()["services"]
                             if s["host"] == self.stack.host
                             and s["binary"] == "mininova-compute"), 10,
                 what="the real host disabled")
        hosts = self.stack.get("/v1/hosts").json()["hosts"]
        room = sum(min(h["vcpus"]["free"] // NANO_FLAVOR[1],
                       h["memory_mb"]["free"] // NANO_FLAVOR[2],
                       h["disk_gb"]["free"] // NANO_FLAVOR[3])
                   for h in hosts if h["name"] in names)
        need = a.p4_posts + a.p4_idle_posts + 2 * len(names)
        if room < need:
            raise RuntimeError("P4: the fake hosts hold %d VMs, the load needs %d: add "
                               "--fake-hosts" % (room, need))
        # Warm-up (untimed): each fake host caches the image on its first build.
        ids = [self.post_vm(client, "p4-warm-%d" % i, image="blank",
                            flavor=NANO_FLAVOR[0])[1] for i in range(2 * len(names))]
        for vm_id in ids:
            self.wait_status(client, vm_id, "ACTIVE")

    def wait_settled(self, project, timeout=300):
        def settled():
            with self.engine.connect() as c:
                rows = dict(c.execute(sa.text(
                    "SELECT vm_state, count(*) FROM instances WHERE deleted_at IS NULL "
                    "AND project_id = :p AND name LIKE 'p4-load-%' GROUP BY vm_state"),
                    {"p": project}).all())
            return rows if rows.get("building", 0) == 0 else None
        return wait_for(settled, timeout, interval=0.2, what="the P4 VMs to settle")

    # -- P6 ----------------------------------------------------------------------

    def p6(self):
        rss, hwm = {}, {}
        for name, pid in self.daemon_pids().items():
            rss[name], hwm[name] = rss_mb(pid)
        self.results["p6_rss_mb"] = rss
        self.results["p6_hwm_mb"] = hwm
        fakes = [rss_mb(p.pid)[0] for n, p in self.stack.procs.items()
                 if n.startswith("compute-")]
        if fakes:
            self.results["p6_rss_fake_compute_mb"] = max(fakes)
        log("P6: RSS %s MB (peak %s)", rss, hwm)

    # -- tear-down -------------------------------------------------------------

    def stop(self):
        stack = self.stack
        if stack is None:
            return
        try:
            if self.conn is not None:
                vms = stack.get("/v1/vms").json().get("vms", [])
                real = [v["id"] for v in vms if v["host"] == stack.host]
                if real:
                    self.delete_and_wait(real, timeout=120)
        except Exception as exc:
            log("clean-up through the API failed (%s); removing domains directly", exc)
        finally:
            if self.floor is not None:
                self.floor.close()
            if self._poll_conn is not None:
                self._poll_conn.driver_connection.autocommit = False
                self._poll_conn.close()
            stack.stop()
            if self.engine is not None:
                self.engine.dispose()
            if self.conn is not None:
                left = bfloor.remove_domains(self.conn, stack.host)
                if left:
                    log("removed %d domain(s) the stack left behind", left)
                self.conn.close()

    # -- P3 ----------------------------------------------------------------------

    def p3(self):
        a = self.args
        log("P3: scale simulation, %d hosts, %d VMs (2 schedulers)", a.hosts, a.vms)
        observer = _SimProfiler(self.profiler)
        with tempfile.TemporaryDirectory(prefix="mininova-sim-", dir=self.workdir) as wd:
            try:
                sim = scale_sim.run(hosts=a.hosts, vms=a.vms, schedulers=2, workdir=wd,
                                    threads=a.sim_threads, observer=observer)
            finally:
                observer.phases.close()
        self.results["p3"] = sim
        self.results["p3_vms_per_s"] = sim["vms_per_s"]
        self.results["p3_overcommit"] = sim["overcommit"]
        self.results["p3_claim_mismatch"] = sim["claim_mismatch"]
        self.results["p3_active"] = sim["active"]
        self.results["p3_cpu_ms_per_vm"] = {k: round(v * 1000.0 / max(1, sim["active"]), 1)
                                            for k, v in sim["cpu_s"].items()}
        log("  %s", sim)


class _SimProfiler:
    """With --profile: py-spy on the sim's API, schedulers and two of its
    computes from the start of its burst of POSTs until every VM settled."""

    def __init__(self, profiler):
        self.profiler = profiler
        self.phases = contextlib.ExitStack()

    def burst_started(self, stack):
        names = ["api"] + sorted(n for n in stack.procs if n.startswith("scheduler"))
        names += sorted(n for n in stack.procs if n.startswith("compute"))[:2]
        self.phases.enter_context(self.profiler.phase(
            "p3", {n: stack.procs[n].pid for n in names}))

    def burst_settled(self, stack):
        self.phases.close()


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
                for phase, key, fn in (("floor+P1+P5", "p1", bench.p1_p5), ("P2", "p2", bench.p2),
                                       ("P4", "p4", bench.p4), ("P6", "p6", bench.p6)):
                    if key in args.only:
                        attempt(phase, fn)
        finally:
            bench.stop()
        if "p3" in args.only:
            attempt("P3", bench.p3)
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
