"""P4 POST: POST /v1/vms under a concurrent closed-loop load (VMs built on
fake-driver hosts, the real host disabled meanwhile) against one INSERT +
COMMIT in psycopg. The list half of P4 is bench/phase_list.py."""
import contextlib
import os
import time
import uuid

import sqlalchemy as sa

from bench import load, profiling, quiet
from bench.harness import log, ms, pct
from mininova_lab.stack import qemu_img_create
from mininova_lab.waiting import wait_for

NANO_FLAVOR = ("bench.nano", 1, 16, 1)   # name, vcpus, MB, GB: 250 fit one fake host
# The POST load is served by an API of its own on the stack with
# [api] workers = POST_API_WORKERS (one process is GIL-bound); the other
# phases keep the stack's one-process API.
POST_API = "api-post"
POST_API_WORKERS = 2
COLD_POSTS = 100   # the first concurrent POSTs on the new API, reported apart


def run(bench):
    a = bench.args
    project = bench.admin_project_id()
    client = bench.client()

    # POST /v1/vms: onto fake-driver hosts, the real one disabled.
    setup_fake_hosts(bench, client)
    url = start_post_api(bench)
    try:
        post_load(bench, client, project, url)
    finally:
        bench.stack.stop_daemon(POST_API)
        bench.stack.api_urls.pop(POST_API, None)


def start_post_api(bench):
    """The POST load's API: [api] workers = POST_API_WORKERS, its URL once
    every worker is up."""
    stack = bench.stack
    stack.start_extra_api(POST_API, "workers = %d" % POST_API_WORKERS)
    url = stack.api_urls[POST_API]
    parent = stack.procs[POST_API].pid
    wait_for(lambda: len(child_pids(parent)) == POST_API_WORKERS, 60, interval=0.2,
             what="%d API workers" % POST_API_WORKERS)
    wait_for(lambda: stack.http.get(url + "/v1", timeout=5).status_code == 200, 60,
             interval=0.2, what="the POST API")
    return url


def child_pids(pid):
    """Live (not zombie) children of ``pid``, from /proc."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                out.append(int(entry))
    return out


def tree_cpu_seconds(pid):
    """CPU (user + system) of ``pid`` and its live children so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in [pid, *child_pids(pid)]:
        try:
            with open("/proc/%d/stat" % p) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / ticks


def post_load(bench, client, project, url):
    a = bench.args
    api_pid = bench.stack.procs[POST_API].pid
    idle = []
    for i in range(a.p4_idle_posts):
        seconds, _, _ = bench.post_vm(client, "p4-idle-%04d" % i, image="blank",
                                     flavor=NANO_FLAVOR[0])
        idle.append(seconds)
    # The API started for this load has empty pools (database connections,
    # broker channels) that concurrency fills: the first concurrent POSTs
    # are timed apart, as the cold figure, before the load.
    cold_n = min(COLD_POSTS, a.p4_posts)
    _, cold_results = load.closed_loop(
        url, bench.stack.http.headers["X-Auth-Token"], cold_n, a.p4_concurrency,
        lambda i: ("POST", "/v1/vms", {"name": "p4-cold-%05d" % i, "image": "blank",
                                       "flavor": NANO_FLAVOR[0]}))
    cold = [sec for _, sec, s, _ in cold_results if s == 202]
    log("P4: %d POSTs from %d concurrent clients", a.p4_posts, a.p4_concurrency)
    pids = bench.pids(POST_API, "scheduler", "conductor", *[n for n in bench.stack.procs if n.startswith(
        "compute-")])
    pg = (profiling.PgActivity(bench.engine, bench.stack.db_name) if a.profile
          else contextlib.nullcontext())
    with bench.profiler.phase("p4-post", pids), pg:
        cpu0 = tree_cpu_seconds(api_pid)
        procs0, machine0 = quiet.processes(), quiet.machine_cpu_seconds()[0]
        wall, results = load.closed_loop(
            url, bench.stack.http.headers["X-Auth-Token"], a.p4_posts,
            a.p4_concurrency, lambda i: ("POST", "/v1/vms", {
                "name": "p4-load-%05d" % i, "image": "blank", "flavor": NANO_FLAVOR[0]}))
    if a.profile:
        bench.results["p4_post_pg_activity"] = pg.top()
        log("P4: PostgreSQL backends during the POST load (mean count):\n%s",
            "\n".join("  %5.2f  %s" % (n, what) for what, n in pg.top()))
    post_cpu = (tree_cpu_seconds(api_pid) - cpu0) / max(1, len(results))
    per_post = cpu_by_component(procs0, quiet.processes(), machine0,
                                quiet.machine_cpu_seconds()[0], len(results))
    # A POST that failed is counted (no goal is met with one), not a sample.
    failed = [(s, b) for _, _, s, b in results + cold_results if s != 202]
    if failed:
        log("P4: %d POSTs failed, e.g. %s", len(failed), failed[0])
    posts = [sec for _, sec, s, _ in results if s == 202]
    settled = wait_settled(bench, project)
    sql_post = sql_floor_post(bench, project, 50 if a.p4_gets >= 50 else a.p4_gets)
    client.close()
    r = bench.results
    r.update({
        # CPU time of the API per request, its parent and workers summed
        # (user + system, 10 ms ticks averaged): what no amount of idle host
        # makes faster.
        "p4_post_api_cpu_ms": ms(post_cpu),
        "p4_post_api_workers": POST_API_WORKERS,
        "p4_post_cpu_ms_per_post": per_post,
        "p4_post_concurrency": a.p4_concurrency, "p4_posts": len(posts),
        "p4_post_failures": len(failed),
        "p4_post_failure_examples": [str(f)[:300] for f in failed[:5]],
        "p4_post_p50_ms": ms(pct(posts, 50)), "p4_post_p99_ms": ms(pct(posts, 99)),
        "p4_post_rate_per_s": round(len(posts) / wall, 1),
        "p4_post_idle_p50_ms": ms(pct(idle, 50)) if idle else None,
        "p4_post_cold_posts": len(cold_results),
        "p4_post_cold_p50_ms": ms(pct(cold, 50)) if cold else None,
        "p4_post_cold_p99_ms": ms(pct(cold, 99)) if cold else None,
        "p4_post_sql_p50_ms": ms(pct(sql_post, 50)),
        "p4_post_sql_p99_ms": ms(pct(sql_post, 99)),
        "p4_built": settled,
    })


# What each process is, for the CPU of the POST load by component.
COMPONENTS = (("api", "nova_api"), ("scheduler", "nova_scheduler"),
              ("conductor", "nova_conductor"), ("computes", "nova_compute"),
              ("load generator", "bench.run"), ("postgres", "postgres"),
              ("rabbitmq", "beam.smp"))


def cpu_by_component(before, after, machine_before, machine_after, posts):
    """ms of CPU per POST of each component (every process of its kind on
    the machine: PostgreSQL and RabbitMQ host-wide) and of the whole machine
    between two ``quiet.processes()`` samples."""
    out = dict.fromkeys([name for name, _ in COMPONENTS] + ["other"], 0.0)
    for pid, (_, name, cpu) in after.items():
        used = cpu - before.get(pid, (0, name, 0.0))[2]
        if used <= 0:
            continue
        label = quiet.label(pid, name)
        out[next((n for n, mark in COMPONENTS if mark in label), "other")] += used
    out["machine"] = machine_after - machine_before
    return {k: round(1000.0 * v / max(1, posts), 2) for k, v in out.items()}


def sql_floor_post(bench, project, n):
    """One INSERT of a VM row and its COMMIT, straight through the driver the daemons use (psycopg)
    (the rows are removed after)."""
    raw = bench.engine.raw_connection()
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
                (str(uuid.uuid4()), name, project, bench.tiny["id"], bench.flavor["id"]))
            raw.commit()
            samples.append(time.perf_counter() - t)
        cur.execute("DELETE FROM instances WHERE name = ANY(%s)", (names,))
        raw.commit()
        return samples
    finally:
        raw.close()


def setup_fake_hosts(bench, client):
    a = bench.args
    base = os.path.join(bench.workdir, "blank.qcow2")
    qemu_img_create(base, "1G")
    bench.stack.add_image("blank", base)
    bench.stack.manage("flavor", "create", NANO_FLAVOR[0], "--vcpus", str(NANO_FLAVOR[1]),
                      "--ram", str(NANO_FLAVOR[2]), "--disk", str(NANO_FLAVOR[3]))
    conf = ("compute_driver = fake\nreserved_host_memory_mb = 0\nsync_interval = 300\n"
            "heartbeat_interval = 5\n")
    names = ["bench-fake%d" % i for i in range(a.fake_hosts)]
    for name in names:
        bench.stack.start_extra_compute(name, extra_conf=conf, wait=False)
    wait_for(lambda: set(names) <= bench.stack.computes_up(), 60, interval=0.2,
             what="the fake compute hosts")
    bench.stack.set_disabled(bench.stack.host, True)
    wait_for(lambda: all(s["status"] == "disabled" for s in
                         bench.stack.get("/v1/services").json()["services"]
                         if s["host"] == bench.stack.host
                         and s["binary"] == "mininova-compute"), 10,
             what="the real host disabled")
    hosts = bench.stack.get("/v1/hosts").json()["hosts"]
    room = sum(min(h["vcpus"]["free"] // NANO_FLAVOR[1],
                   h["memory_mb"]["free"] // NANO_FLAVOR[2],
                   h["disk_gb"]["free"] // NANO_FLAVOR[3])
               for h in hosts if h["name"] in names)
    need = a.p4_posts + min(COLD_POSTS, a.p4_posts) + a.p4_idle_posts + 2 * len(names)
    if room < need:
        raise RuntimeError("P4: the fake hosts hold %d VMs, the load needs %d: add "
                           "--fake-hosts" % (room, need))
    # Warm-up (untimed): each fake host caches the image on its first build.
    ids = [bench.post_vm(client, "p4-warm-%d" % i, image="blank",
                        flavor=NANO_FLAVOR[0])[1] for i in range(2 * len(names))]
    for vm_id in ids:
        bench.wait_status(client, vm_id, "ACTIVE")


def wait_settled(bench, project, timeout=300):
    def settled():
        with bench.engine.connect() as c:
            rows = dict(c.execute(sa.text(
                "SELECT vm_state, count(*) FROM instances WHERE deleted_at IS NULL "
                "AND project_id = :p AND name LIKE 'p4-load-%' GROUP BY vm_state"),
                {"p": project}).all())
        return rows if rows.get("building", 0) == 0 else None
    return wait_for(settled, timeout, interval=0.2, what="the P4 VMs to settle")
