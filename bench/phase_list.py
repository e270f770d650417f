"""P4 list: GET /v1/vms with 1000 VM rows in the DB, measured under three
conditions, each request interleaved with its floor (the same SQL, same
columns, straight through the daemons' driver, psycopg) so that both see the
same host:

- churn, P4's figure: a background load changes the state of 5% of the VMs
  each second through the conductor (bench/churn.py), so the API's per-VM
  JSON memo misses for every VM that changed, as it does in life;
- warm: nothing changes; every VM comes from the memo (the best case, kept
  for comparison);
- cold: an untimed UPDATE touches every row before each GET, so no VM comes
  from the memo (the whole list is built and encoded: the worst case).

Under the same churn, GET /v1/vms?limit=100 walks the pages by the markers
of its ``vms_links`` (its floor: the marker's lookup and the page's SELECT,
the two queries the API makes).

A request that fails (wire error, status other than 200, a body without
the VMs it should have) is counted, not fatal: see load.Series.
"""
import datetime
import os
import random
import time
import urllib.parse
import uuid

import sqlalchemy as sa

from bench import load, scale_sim
from bench.churn import Churn
from bench.harness import log
from common.db import models
from nova_api.views import VM_FIELDS

PHANTOM_HOST = "bench-phantom"   # the rows' host: no compute daemon serves it
PAGE_LIMIT = 100

CONDITIONS = {
    "warm": "nothing changing: every VM from the API's JSON memo",
    "churn": "{pct:g}% of the {n} VMs change state each second (conductor RPC, "
             "ACTIVE <-> SHUTOFF), one GET /v1/vms and one ?limit=100 page every "
             "{interval:g} s on average (exponential gaps): the memo misses for each "
             "VM that changed since it was last listed",
    "cold": "every row updated (untimed) before each GET: no VM from the memo",
}

_COLUMNS = ", ".join(VM_FIELDS)
# The queries of db_api.instance_page, with the columns of views.VM_FIELDS
# (what the API reads): the floor does exactly the DB work a list needs.
SQL_PAGE = ("SELECT " + _COLUMNS + " FROM instances WHERE project_id = %s "
            "AND deleted_at IS NULL ORDER BY created_at, id LIMIT %s")
SQL_MARKER = "SELECT created_at, id FROM instances WHERE id = %s AND project_id = %s"
SQL_PAGE_AFTER = ("SELECT " + _COLUMNS + " FROM instances WHERE project_id = %s "
                  "AND deleted_at IS NULL AND (created_at, id) > (%s, %s) "
                  "ORDER BY created_at, id LIMIT %s")


def insert_rows(bench, project, count):
    """``count`` ACTIVE VM rows on PHANTOM_HOST, created one second apart
    (as VMs are, over time: the list's order is never decided by ids
    alone); returns their ids."""
    now = models.utcnow()
    rows = [dict(id=str(uuid.uuid4()), name="p4-row-%05d" % i, project_id=project,
                 user_id=None, image_id=bench.tiny["id"], flavor_id=bench.flavor["id"],
                 vcpus=bench.flavor["vcpus"], memory_mb=bench.flavor["ram"],
                 root_gb=bench.flavor["disk"], host=PHANTOM_HOST, vm_state="active",
                 task_state=None, power_state="running",
                 mac_address="52:54:00:%02x:%02x:%02x" % tuple(os.urandom(3)),
                 created_at=now - datetime.timedelta(seconds=count - i), updated_at=now,
                 launched_at=now)
            for i in range(count)]
    if rows:
        with bench.engine.begin() as c:
            c.execute(sa.insert(models.Instance.__table__), rows)
    analyze(bench)
    return [r["id"] for r in rows]


def analyze(bench, vacuum=False):
    with bench.engine.connect() as c:  # fresh statistics for the planner
        c.execution_options(isolation_level="AUTOCOMMIT").execute(
            sa.text(("VACUUM ANALYZE" if vacuum else "ANALYZE") + " instances"))


class Lister:
    """The timed requests: one API client, one psycopg connection."""

    def __init__(self, bench, project, expected):
        self.client = bench.client()
        self.raw = bench.engine.raw_connection()
        self.cur = self.raw.cursor()
        self.project = project
        self.expected = expected
        self.next_path = None   # where the page walk goes on

    def close(self):
        self.client.close()
        self.raw.close()

    def get_all(self):
        """One GET /v1/vms; its seconds. Failed unless every VM is in it."""
        seconds, status, body, _ = self.client.timed("GET", "/v1/vms")
        if status != 200:
            raise load.Failed("GET /v1/vms -> %s" % status)
        got = len((body or {}).get("vms", ()))
        if got != self.expected:
            raise load.Failed("GET /v1/vms listed %d VMs, not %d" % (got, self.expected))
        self.last_body = body
        return seconds

    def sql_all(self):
        return self._sql(None, self.expected + 1)  # the API asks one more: "more follow?"

    def get_page(self):
        """The next page of the walk (the first after the last); its seconds."""
        path = self.next_path or "/v1/vms?limit=%d" % PAGE_LIMIT
        self.next_path = None   # a failed page restarts the walk
        self.page_marker = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query).get(
            "marker", [None])[0]
        seconds, status, body, _ = self.client.timed("GET", path)
        if status != 200:
            raise load.Failed("GET %s -> %s" % (path, status))
        vms = (body or {}).get("vms", [])
        links = [x["href"] for x in (body or {}).get("vms_links", []) if x.get("rel") == "next"]
        if links:
            if len(vms) != PAGE_LIMIT:
                raise load.Failed("a page of %d VMs before the last" % len(vms))
            nxt = urllib.parse.urlsplit(links[0])
            self.next_path = nxt.path + "?" + nxt.query
        elif not 1 <= len(vms) <= PAGE_LIMIT:
            raise load.Failed("a last page of %d VMs" % len(vms))
        return seconds

    def sql_page(self):
        return self._sql(self.page_marker, PAGE_LIMIT + 1)

    def _sql(self, marker, limit):
        t = time.perf_counter()
        if marker is None:
            self.cur.execute(SQL_PAGE, (self.project, limit))
        else:
            self.cur.execute(SQL_MARKER, (marker, self.project))
            after = self.cur.fetchone()
            self.cur.execute(SQL_PAGE_AFTER, (self.project, after[0], after[1], limit))
        self.cur.fetchall()
        self.raw.commit()
        return time.perf_counter() - t


def series(n, steps, before=None, interval=None, seed=17):
    """``n`` rounds; in each, the untimed ``before()``, then for each
    ``(name, api, floor)`` of ``steps`` one API request and its floor.
    ``interval``: mean seconds from one round's start to the next's,
    exponentially distributed (open loop, as clients that poll on their own
    clocks; seeded, so runs are comparable); None: back to back.
    {name: (api Series, floor Series)}."""
    out = {name: (load.Series(name), load.Series(name + " floor")) for name, _, _ in steps}
    rng = random.Random(seed)
    due = time.monotonic()
    for _ in range(n):
        if interval:
            due += rng.expovariate(1.0 / interval)
            time.sleep(max(0.0, due - time.monotonic()))
        if before:
            before()
        for name, api, floor in steps:
            out[name][0].measure(api)
            out[name][1].measure(floor)
    return out


def figure(s_api, s_floor, conditions, **extra):
    out = s_api.summary()
    out["conditions"] = conditions
    out["floor"] = s_floor.summary()
    out.update(extra)
    return out


def run(bench):
    a = bench.args
    project = bench.admin_project_id()
    client = bench.client()
    live = len(client.request("GET", "/v1/vms")[1]["vms"])
    client.close()
    log("P4 list: inserting %d VM rows (project %s) into the stack's DB",
        max(0, a.p4_vms - live), project)
    ids = insert_rows(bench, project, max(0, a.p4_vms - live))
    n = a.p4_vms
    procs = {"api": bench.stack.procs["api"], "conductor": bench.stack.procs["conductor"]}
    lister = Lister(bench, project, n)
    figures = {}
    try:
        lister.get_all()    # untimed: fills the memo, proves the count
        cpu0 = scale_sim.cpu_seconds(procs)
        s = series(a.p4_gets, [("warm", lister.get_all, lister.sql_all)])
        cpu1 = scale_sim.cpu_seconds(procs)
        figures["warm"] = figure(*s["warm"], CONDITIONS["warm"],
                                 api_cpu_ms=_per(cpu1["api"] - cpu0["api"], a.p4_gets))

        rate = a.p4_churn_pct / 100.0 * n
        conditions = CONDITIONS["churn"].format(pct=a.p4_churn_pct, n=n,
                                                interval=a.p4_get_interval)
        log("P4 list: %d rounds (GET /v1/vms, GET ?limit=%d) every %.2f s on average "
            "while %.0f VMs/s change state", a.p4_gets, PAGE_LIMIT, a.p4_get_interval, rate)
        churn = Churn(bench.stack.transport_url, PHANTOM_HOST, ids, rate)
        cpu_churn = scale_sim.cpu_seconds(procs)
        counts = []
        with churn:
            time.sleep(1.0)   # untimed: changes flowing before the first sample
            with bench.profiler.phase("p4-get", bench.pids("api")):
                w0, cpu0 = churn.count(), scale_sim.cpu_seconds(procs)
                s = series(a.p4_gets, [("churn", lister.get_all, lister.sql_all),
                                       ("page", lister.get_page, lister.sql_page)],
                           before=lambda: counts.append(churn.count()[1]),
                           interval=a.p4_get_interval)
                w1, cpu1 = churn.count(), scale_sim.cpu_seconds(procs)
        between = [y - x for x, y in zip(counts, counts[1:])]
        extra = dict(churn_per_s=_rate(w0, w1),
                     changed_between_rounds={"mean": round(sum(between) / len(between), 1)
                                             if between else None,
                                             "max": max(between, default=None)})
        figures["churn"] = figure(*s["churn"], conditions, **extra,
                                  api_cpu_ms_per_round=_per(cpu1["api"] - cpu0["api"],
                                                            a.p4_gets))
        figures["page"] = figure(*s["page"], conditions, limit=PAGE_LIMIT, **extra)
        stats = churn.stats()
        # The scheduler daemon is also the conductor; nothing else runs in it now.
        stats["conductor_cpu_ms_per_change"] = _per(
            scale_sim.cpu_seconds(procs)["conductor"] - cpu_churn["conductor"],
            stats["applied"])
        check = consistency(bench, lister, project, stats)

        n_cold = max(5, a.p4_gets // 4)
        s = series(n_cold, [("cold", lister.get_all, lister.sql_all)],
                   before=lambda: touch_all(bench))
        figures["cold"] = figure(*s["cold"], CONDITIONS["cold"])
    finally:
        lister.close()
    analyze(bench, vacuum=True)   # the cold UPDATEs' dead rows: not the next phase's cost
    r = bench.results
    r["p4_vms"] = n
    r["p4_list"] = figures
    r["p4_churn"] = stats
    r["p4_list_check"] = check
    for key, name in (("p4_get", "churn"), ("p4_get_warm", "warm"), ("p4_get_cold", "cold"),
                      ("p4_page", "page")):
        f = figures[name]
        r.update({key + "_p50_ms": f["p50_ms"], key + "_p95_ms": f["p95_ms"],
                  key + "_p99_ms": f["p99_ms"], key + "_failures": f["failures"],
                  key + "_sql_p50_ms": f["floor"]["p50_ms"],
                  key + "_sql_p95_ms": f["floor"]["p95_ms"],
                  key + "_sql_p99_ms": f["floor"]["p99_ms"]})
    r["p4_round_api_cpu_ms"] = figures["churn"]["api_cpu_ms_per_round"]
    r["p4_get_warm_api_cpu_ms"] = figures["warm"]["api_cpu_ms"]
    log("P4 list: %s", {k: (f["p50_ms"], f["p99_ms"], f["failures"])
                        for k, f in figures.items()})
    if not check["consistent"]:
        raise RuntimeError("P4 list: the API's list disagrees with the DB after the churn: "
                           "%s" % check)


def touch_all(bench):
    """Change every phantom row (its updated_at by a microsecond: a new
    memo key, the same JSON text)."""
    with bench.engine.begin() as c:
        c.execute(sa.text("UPDATE instances SET updated_at = updated_at + "
                          "interval '1 microsecond' WHERE host = :h"), {"h": PHANTOM_HOST})


def consistency(bench, lister, project, stats):
    """After the churn: VMs SHUTOFF in the API's list, stopped rows in the
    DB, and stopped by the churn's own count: three independent counts
    that must agree (a memo that served a stale VM would break it)."""
    lister.get_all()
    api_shutoff = sum(1 for v in lister.last_body["vms"] if v["status"] == "SHUTOFF")
    with bench.engine.connect() as c:
        db_stopped, changed = c.execute(sa.text(
            "SELECT count(*) FILTER (WHERE vm_state = 'stopped'), "
            "count(*) FILTER (WHERE updated_at > launched_at) FROM instances "
            "WHERE host = :h AND project_id = :p AND deleted_at IS NULL"),
            {"h": PHANTOM_HOST, "p": project}).one()
    consistent = api_shutoff == db_stopped == stats["stopped_now"]
    if stats["refused"] == stats["errors"] == 0:   # each change hit the next VM in turn
        consistent = consistent and changed == min(stats["applied"], stats["vms"])
    return {"api_shutoff": api_shutoff, "db_stopped": db_stopped,
            "churn_stopped": stats["stopped_now"], "db_rows_changed": changed,
            "churn_applied": stats["applied"], "consistent": consistent}


def _per(cpu_seconds, count):
    return round(cpu_seconds * 1000.0 / count, 2) if count else None


def _rate(c0, c1):
    (t0, n0), (t1, n1) = c0, c1
    return round((n1 - n0) / (t1 - t0), 1) if t1 > t0 else None
