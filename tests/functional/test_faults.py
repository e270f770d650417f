"""Faults: killing any part at any moment loses nothing and leaves nothing behind.

Each test runs its own stack (private vhost and database, its own daemons),
kills or restarts one part while VMs are being built or deleted, waits with
deadlines for everything to settle, prints the measured recovery time and
ends with ``nothing_orphaned``: every row settled, allocations only for live
VMs on their host (and the hosts' usage equal to their allocations), a libvirt domain
exactly for each live VM at rest, an instance directory only for those.

The tests that stop RabbitMQ or PostgreSQL do it to a broker node and a
database cluster of their own (mininova_lab/private_services.py), never to the services
the machine runs.
"""
import concurrent.futures
import datetime
import http.server
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import uuid

import kombu
import pytest
import sqlalchemy as sa

from common import context, exception, rpc, states
from common.db import actions, allocations
from common.db import api as db_api
from common.db.allocations import Resources
from common.db.models import Allocation, Instance, InstanceAction, Service, utcnow
from nova_conductor.manager import ConductorManager
from nova_conductor import watchdog
from nova_conductor.watchdog import Watchdog
from mininova_lab.private_services import PgCluster, RabbitNode
from mininova_lab.stack import Stack, domain_names, qemu_img_create, virsh
from mininova_lab.waiting import wait_for

pytestmark = pytest.mark.real_services("rabbitmq", "postgresql", "libvirt", "http")


# -- the stacks ------------------------------------------------------------------

def conf_text(**groups):
    """extra_conf for Stack: {"compute": {"build_timeout": 10}, ...} -> ini text."""
    return "".join("\n[%s]\n%s" % (group, "".join("%s = %s\n" % kv for kv in opts.items()))
                   for group, opts in groups.items())


FAST = {"DEFAULT": {"rpc_response_timeout": 5},
        "conductor": {"watchdog_interval": 1, "task_resend_after": 5}}


def fast_conf(build_timeout=120, **groups):
    merged = {g: dict(o) for g, o in FAST.items()}
    merged.setdefault("compute", {})["build_timeout"] = build_timeout
    for group, opts in groups.items():
        merged.setdefault(group, {}).update(opts)
    return conf_text(**merged)


@pytest.fixture
def make_stack(tmp_path):
    """Start a stack of our own (with the 'blank' image); at the end make sure
    its RabbitMQ and PostgreSQL run, destroy any domain of its VMs, drop it all."""
    made = []

    def make(extra_conf, compute=True, broker=None, database=None):
        kw = {k: v for k, v in (("broker", broker), ("database", database)) if v is not None}
        stack = Stack(tmp_path / ("stack%d" % len(made)), network="", extra_conf=extra_conf, **kw)
        made.append(stack)
        stack.start(compute=compute)
        base = os.path.join(stack.workdir, "blank.qcow2")
        qemu_img_create(base, "1G")
        stack.image = stack.add_image("blank", base)
        stack.base_image = base
        stack.hosts = {stack.host: stack.instances_path} if compute else {}
        return stack

    yield make
    for stack in made:
        if isinstance(stack.broker, RabbitNode):
            stack.broker.start()
        if isinstance(stack.database, PgCluster):
            stack.database.start()
        for proc in stack.procs.values():
            _signal(proc, signal.SIGCONT)
        ids = []
        try:
            with _engine(stack).connect() as c:
                ids = list(c.execute(sa.text("SELECT id FROM instances")).scalars())
        except Exception:
            pass
        for name in list(stack.procs):
            stack.stop_daemon(name)
        present = domain_names()
        for instance_id in ids:
            if "mininova-" + instance_id in present:
                virsh("destroy", "mininova-" + instance_id)
                virsh("undefine", "mininova-" + instance_id, "--managed-save")
        _engine(stack).dispose()
        stack.stop()
        print("  (logs of that stack: %s)" % stack.logs)


_engines = {}


def _engine(stack):
    if stack.db_name not in _engines:
        _engines[stack.db_name] = sa.create_engine(stack.db_url, pool_pre_ping=True)
    return _engines[stack.db_name]


def _signal(proc, sig):
    if proc.poll() is None:
        proc.send_signal(sig)


def log(stack, name):
    path = os.path.join(stack.logs, name + ".log")
    if not os.path.exists(path):
        return ""
    with open(path, errors="replace") as f:
        return f.read()


def report(what, seconds, details=""):
    print("\n[faults] %s: %.1f s%s" % (what, seconds, " (%s)" % details if details else ""))


# -- VMs -------------------------------------------------------------------------

def create(stack, name):
    r = stack.post("/v1/vms", {"name": name, "image": "blank", "flavor": "m1.tiny"})
    assert r.status_code == 202, r.text
    return r.json()["vm"]["id"]


def create_many(stack, names):
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        return list(pool.map(lambda n: create(stack, n), names))


def vms(stack):
    r = stack.get("/v1/vms")
    assert r.status_code == 200, r.text
    return {vm["id"]: vm for vm in r.json()["vms"]}


def wait_settled(stack, ids, timeout, allow_error=True):
    """Wait until none of ``ids`` is building or has a task; the VMs."""
    def settled():
        current = vms(stack)
        missing = [i for i in ids if i not in current]
        assert not missing, "VMs vanished: %s" % missing
        if not allow_error:
            errors = {i: current[i]["fault"] for i in ids if current[i]["status"] == "ERROR"}
            assert not errors, "VMs in ERROR: %s" % errors
        return ({i: current[i] for i in ids}
                if all(current[i]["status"] in ("ACTIVE", "ERROR")
                       and current[i]["task_state"] is None for i in ids) else None)
    return wait_for(settled, timeout, interval=0.2, what="%d VMs to settle" % len(ids))


def wait_gone(stack, ids, timeout):
    wait_for(lambda: all(stack.get("/v1/vms/" + i).status_code == 404 for i in ids), timeout,
             interval=0.2, what="%d VMs to be gone" % len(ids))


def spawn_counts(stack, ids, names=("compute",)):
    """How many times each VM was built: 'running after' lines in compute logs."""
    text = "".join(log(stack, n) for n in names)
    return {i: text.count("VM %s: running after" % i) for i in ids}


# -- nothing left behind -----------------------------------------------------------

def orphans(stack):
    """What is wrong in the DB, the allocations, libvirt or the instance dirs; [] if nothing."""
    problems = []
    with _engine(stack).connect() as c:
        rows = {r.id: r for r in c.execute(sa.text(
            "SELECT id, host, vm_state, task_state, deleted_at, fault FROM instances"))}
        held = list(c.execute(sa.text(
            "SELECT consumer_id, host, vcpus, memory_mb, disk_gb FROM allocations")))
        nodes = list(c.execute(sa.text(
            "SELECT host, vcpus_used, memory_mb_used, local_gb_used FROM compute_nodes")))
    live = {i: r for i, r in rows.items() if r.deleted_at is None}
    for i, r in live.items():
        if r.vm_state == "building" or r.task_state is not None:
            problems.append("VM %s still %s/%s" % (i, r.vm_state, r.task_state))
        if r.vm_state == "error" and not r.fault:
            problems.append("VM %s in ERROR without a fault" % i)
        if r.vm_state in states.RESTING and (i, r.host) not in {
                (a.consumer_id, a.host) for a in held}:
            problems.append("VM %s is %s without an allocation on its host" % (i, r.vm_state))
    for a in held:
        row = live.get(a.consumer_id)
        if row is None or row.host != a.host or row.vm_state in ("error", "deleted"):
            problems.append("allocation of %s on %s, but the VM is %s" % (
                a.consumer_id, a.host,
                "gone" if row is None else "%s on %s" % (row.vm_state, row.host)))
    for node in nodes:
        mine = [a for a in held if a.host == node.host]
        expected = (sum(a.vcpus for a in mine), sum(a.memory_mb for a in mine),
                    sum(a.disk_gb for a in mine))
        used = (node.vcpus_used, node.memory_mb_used, node.local_gb_used)
        if used != expected:
            problems.append("host %s uses %s but its allocations add up to %s"
                            % (node.host, used, expected))
    domains = domain_names()
    for i, r in rows.items():
        wanted = r.deleted_at is None and r.vm_state in states.RESTING
        if ("mininova-" + i in domains) != wanted:
            problems.append("VM %s (%s%s): domain %s" % (
                i, r.vm_state, ", deleted" if r.deleted_at else "",
                "left behind" if not wanted else "missing"))
    for host, path in stack.hosts.items():
        names = set(os.listdir(path)) if os.path.isdir(path) else set()
        for name in names:
            r = live.get(name)
            if r is None or r.host != host or r.vm_state not in states.RESTING:
                problems.append("instance dir %s/%s left behind (%s)" % (
                    host, name, "no live VM" if r is None else r.vm_state))
        for i, r in live.items():
            if r.host == host and r.vm_state in states.RESTING and i not in names:
                problems.append("VM %s has no instance dir on %s" % (i, host))
    return problems


def nothing_orphaned(stack, timeout=30):
    """Wait (a domain destroyed by a late clean-up takes a moment) until
    ``orphans`` finds nothing; the seconds it took."""
    start = time.monotonic()
    last = []

    def clean():
        last[:] = orphans(stack)
        return not last
    try:
        wait_for(clean, timeout, interval=0.25, what="nothing orphaned")
    except AssertionError:
        raise AssertionError("left behind after %d s:\n  %s" % (timeout, "\n  ".join(last)))
    took = time.monotonic() - start
    # And mininova's own audit agrees (it exits non-zero on any finding).
    try:
        stack.manage("audit")
    except subprocess.CalledProcessError as e:
        raise AssertionError("mininova-manage audit found:\n%s" % e.output)
    return took


# -- RabbitMQ and PostgreSQL ---------------------------------------------------------

def _port_open(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


# == 1. compute killed while building ================================================

def test_compute_killed_while_building(make_stack):
    build_timeout = 10
    # 4 workers (and so 4 unacked builds at most): when compute dies some
    # builds are done, some under way and the others still queued.
    stack = make_stack(fast_conf(build_timeout=build_timeout,
                                 DEFAULT={"rpc_workers": 4},
                                 compute={"rpc_workers": 4}))

    # The image in the host's cache, so that builds run side by side.
    warm = create(stack, "warm")
    stack.wait_status(warm, "ACTIVE", timeout=60)

    def kill_mid_burst(ids):
        """SIGKILL compute while some builds are done, some under way."""
        def mid():
            current = vms(stack)
            spawning = sum(1 for i in ids if current[i]["task_state"] == "spawning")
            done = sum(1 for i in ids if current[i]["status"] == "ACTIVE")
            return spawning >= 3 and done >= 1
        wait_for(mid, 30, interval=0.01, what="builds under way")
        stack.stop_daemon("compute", kill=True)
        return time.monotonic()

    # a) killed and restarted at once: start-up settling and the redelivered
    #    builds; every VM ACTIVE or ERROR (with a fault). How long it took
    #    is printed, not asserted (a loaded machine is slower, not wrong).
    ids = first = create_many(stack, ["a%02d" % i for i in range(10)])
    kill_mid_burst(ids)
    stack.start_daemon("compute")
    restarted = time.monotonic()
    final = wait_settled(stack, ids, build_timeout + 20)
    settled = time.monotonic() - restarted
    counts = {s: sum(1 for v in final.values() if v["status"] == s) for s in ("ACTIVE", "ERROR")}
    assert all(v["fault"] for v in final.values() if v["status"] == "ERROR")
    cleaned = nothing_orphaned(stack)
    report("compute SIGKILLed mid-build, restarted: 10 VMs settled after the restart in",
           settled, "%(ACTIVE)d ACTIVE, %(ERROR)d ERROR with a fault" % counts
           + "; clean %.1f s later" % cleaned)

    # b) killed and kept away past build_timeout: the watchdog gives the
    #    builds up; the restarted compute removes what they left.
    ids = create_many(stack, ["b%02d" % i for i in range(10)])
    killed = kill_mid_burst(ids)
    final = wait_settled(stack, ids, build_timeout + 20)
    given_up = time.monotonic() - killed
    timed_out = [v for v in final.values() if v["status"] == "ERROR"]
    assert timed_out and all("build_timeout" in v["fault"]["message"]
                             and stack.host in v["fault"]["message"] for v in timed_out)
    with _engine(stack).connect() as c:
        assert not c.execute(sa.text("SELECT consumer_id FROM allocations "
                                     "WHERE consumer_id IN :ids")
                             .bindparams(sa.bindparam("ids", expanding=True)),
                             {"ids": [v["id"] for v in timed_out]}).all()
    stack.start_daemon("compute")
    restarted = time.monotonic()
    wait_for(stack._compute_up, 30, what="compute back")
    cleaned = nothing_orphaned(stack)
    report("compute SIGKILLed mid-build, away past build_timeout: %d builds given up after"
           % len(timed_out), given_up,
           "build_timeout %d s; leftovers gone %.1f s after the restart"
           % (build_timeout, time.monotonic() - restarted))
    # Once each, but for a build the kill interrupted after its domain ran
    # and before its report: that one is handed back and built again.
    again = set(re.findall(r"VM (\S+) build failed on \S+ \(attempt \d+ of \d+\): The build "
                           r"was interrupted by a restart", log(stack, "conductor")))
    assert max(n for i, n in spawn_counts(stack, first + list(final)).items()
               if i not in again) <= 1


def test_interrupted_builds_end_active_after_a_restart_on_a_one_host_cloud(make_stack):
    """Compute killed with builds under way and kept away until its host is
    down: once restarted, the builds it hands back to the scheduler find it
    up again (it reports in before anything is retried), so on this one-host
    cloud every VM ends ACTIVE, none in ERROR with "no valid host"."""
    down_after = 10  # [scheduler] service_down_time; heartbeats every 2 s
    stack = make_stack(fast_conf(DEFAULT={"rpc_workers": 4}, compute={"rpc_workers": 4},
                                 scheduler={"service_down_time": down_after}))
    warm = create(stack, "warm")  # the image in the host's cache
    stack.wait_status(warm, "ACTIVE", timeout=60)

    ids = create_many(stack, ["i%02d" % i for i in range(10)])

    def started_here():
        """Builds under way on the host (its instance directory made)."""
        current = vms(stack)
        return [i for i in ids if current[i]["task_state"] == "spawning"
                and os.path.isdir(os.path.join(stack.instances_path, i))]
    wait_for(lambda: len(started_here()) >= 2, 30, interval=0.01, what="builds under way")
    stack.stop_daemon("compute", kill=True)
    wait_for(lambda: stack.host not in stack.computes_up(), down_after + 30, interval=0.2,
             what="the host to be reported down")
    stack.start_daemon("compute")
    final = wait_settled(stack, ids, 120)
    errors = {i: v["fault"] for i, v in final.items() if v["status"] != "ACTIVE"}
    assert not errors, "VMs in ERROR: %s" % errors
    assert "interrupted by a restart" in log(stack, "conductor"), \
        "no build was under way when compute died: nothing was retried"
    nothing_orphaned(stack)


# == 2. scheduler and conductor killed mid-burst ========================================

def test_scheduler_and_conductor_killed_mid_burst(make_stack):
    stack = make_stack(fast_conf())
    scheduler, conductor = stack.procs["scheduler"], stack.procs["conductor"]
    first = create_many(stack, ["s%02d" % i for i in range(6)])
    wait_for(lambda: all(vms(stack)[i]["host"] for i in first), 30, what="first VMs placed")
    # Stopped first, so that RabbitMQ hands them the next requests (prefetch)
    # and they are unacknowledged when they die - at any point of their work.
    scheduler.send_signal(signal.SIGSTOP)
    conductor.send_signal(signal.SIGSTOP)
    rest = create_many(stack, ["s%02d" % i for i in range(6, 21)])
    # Compute reports to the conductor: builds, and a delete.
    gone = first.pop(0)
    assert stack.delete("/v1/vms/" + gone).status_code == 202
    wait_for(lambda: "conductor unavailable" in log(stack, "compute"), 30,
             what="compute to retry its reports")
    for name in ("scheduler", "conductor"):
        stack.stop_daemon(name, kill=True)
        stack.start_daemon(name)
    restarted = time.monotonic()
    ids = first + rest
    final = wait_settled(stack, ids, 60, allow_error=False)
    wait_gone(stack, [gone], 30)
    recovered = time.monotonic() - restarted
    assert all(v["status"] == "ACTIVE" for v in final.values())
    conductor_log = log(stack, "conductor")
    assert "Received cast build_instances on conductor" in conductor_log
    assert ", redelivered)" in conductor_log, "no unacknowledged request was redelivered"
    assert spawn_counts(stack, ids) == {i: 1 for i in ids}, "a VM was built twice"
    with _engine(stack).connect() as c:
        held = c.execute(sa.text("SELECT consumer_id, count(*) FROM allocations "
                                 "GROUP BY consumer_id")).all()
    assert sorted(i for i, _ in held) == sorted(ids) and {n for _, n in held} == {1}
    nothing_orphaned(stack)
    report("scheduler and conductor SIGKILLed with 15 requests unacked and reports pending: "
           "20 VMs ACTIVE "
           "and a delete done after the restart in", recovered, "each built once, one allocation each")


# == 3. RabbitMQ restarted during a burst ==============================================

def test_rabbitmq_restart_during_burst(rabbit_node, make_stack):  # node outlives the stack
    stack = make_stack(fast_conf(), broker=rabbit_node)
    keep = create_many(stack, ["keep%02d" % i for i in range(10)])
    wait_settled(stack, keep, 60, allow_error=False)

    ops = []
    for i in range(20):
        ops.append(("create", "burst%02d" % i))
        if i % 2:
            ops.append(("delete", keep[i // 2]))
    results = {}

    def run(op):
        kind, ref = op
        t0 = time.monotonic()
        r = (stack.post("/v1/vms", {"name": ref, "image": "blank", "flavor": "m1.tiny"})
             if kind == "create" else stack.delete("/v1/vms/" + ref))
        results[op] = (r.status_code, time.monotonic() - t0, r.text)

    def burst(part):
        with concurrent.futures.ThreadPoolExecutor(len(part)) as pool:
            list(pool.map(run, part))

    half = len(ops) // 2
    try:
        # The first half is accepted; the daemons work on it as the broker goes.
        burst(ops[:half])
        assert {results[op][0] for op in ops[:half]} == {202}, results
        stopping = time.monotonic()
        rabbit_node.stop()
        wait_for(lambda: not _port_open(rabbit_node.port), 30, what="RabbitMQ to stop")
        stopped = time.monotonic() - stopping
        # The second half arrives while it is down: refused at once (no hang),
        # with a clear message; nothing stored; what needs only the DB works.
        burst(ops[half:])
        assert stack.get("/v1/vms").status_code == 200
    finally:
        rabbit_node.start()
    back = time.monotonic()
    refused = ops[half:]
    for op in refused:
        code, seconds, text = results[op]
        assert code == 503, (op, text)
        assert "message broker unreachable" in json.loads(text)["error"]["message"]
        assert seconds < 5, "%s answered after %.1f s" % (op, seconds)
    slowest = max(results[op][1] for op in refused)
    # A refused create stored nothing: the client sends it again.
    for kind, name in refused:
        if kind == "create":
            assert stack.get("/v1/vms/" + name).status_code == 404, name
            wait_for(lambda: stack.post("/v1/vms", {"name": name, "image": "blank",
                                                    "flavor": "m1.tiny"}).status_code == 202,
                     30, interval=0.5, what="create %s accepted again" % name)
    # A refused delete is not sent again by the client: the VM stays marked
    # deleting and the scheduler's watchdog sends the delete on.
    created = {vm["name"]: vm["id"] for vm in vms(stack).values()}
    burst_ids = [created["burst%02d" % i] for i in range(20)]
    deleted = [ref for kind, ref in ops if kind == "delete"]
    final = wait_settled(stack, burst_ids, 90, allow_error=False)
    wait_gone(stack, deleted, 60)
    recovered = time.monotonic() - back
    assert all(v["status"] == "ACTIVE" for v in final.values())
    assert sorted(n for n in created if n.startswith("burst")) == sorted(
        "burst%02d" % i for i in range(20))
    assert spawn_counts(stack, burst_ids) == {i: 1 for i in burst_ids}
    for daemon in ("scheduler", "conductor", "compute"):
        assert "Reconnected to the message broker" in log(stack, daemon), daemon
    nothing_orphaned(stack)
    report("RabbitMQ restarted during 20 creates + 10 deletes: all done after it returned in",
           recovered, "the %d requests sent while it was down refused with 503 in <= %.1f s; "
                      "broker stop took %.1f s" % (len(refused), slowest, stopped))


# == 4. PostgreSQL restarted ==========================================================

def test_postgresql_restart(pg_cluster, make_stack):  # cluster outlives the stack
    stack = make_stack(fast_conf(), database=pg_cluster)
    old = create_many(stack, ["old%d" % i for i in range(3)])
    wait_settled(stack, old, 60, allow_error=False)
    scheduler = stack.procs["scheduler"]
    api_pid = stack.procs["api"].pid
    # Builds wait on the scheduler (stopped for a moment) so that the
    # conductor meets the outage with builds to place, and compute with
    # reports (the deletes) to make.
    scheduler.send_signal(signal.SIGSTOP)
    try:
        new = create_many(stack, ["new%02d" % i for i in range(10)])
        for vm_id in old:
            assert stack.delete("/v1/vms/" + vm_id).status_code == 202
        pg_cluster.stop()
        wait_for(lambda: not _port_open(pg_cluster.port), 30, what="PostgreSQL to stop")
        down = time.monotonic()
        t0 = time.monotonic()
        r = stack.get("/v1/vms")
        answered = time.monotonic() - t0
        assert r.status_code == 503, r.text
        assert "database unreachable" in r.json()["error"]["message"]
        assert answered < 5
        r = stack.post("/v1/vms", {"name": "during", "image": "blank", "flavor": "m1.tiny"})
        assert r.status_code == 503, r.text
        scheduler.send_signal(signal.SIGCONT)
        wait_for(lambda: "Cast build_instances on conductor: Service unavailable: database "
                         "unreachable; retrying" in log(stack, "conductor"), 120,
                 what="the conductor to put its builds back for later")
        wait_for(lambda: "conductor unavailable (Service unavailable: database unreachable)"
                         in log(stack, "compute"), 30, what="compute to retry its reports")
    finally:
        _signal(scheduler, signal.SIGCONT)
        pg_cluster.start()
    outage = time.monotonic() - down
    back = time.monotonic()
    wait_for(lambda: stack.get("/v1/vms").status_code == 200, 30, what="the API to recover")
    api_back = time.monotonic() - back
    final = wait_settled(stack, new, 60, allow_error=False)
    wait_gone(stack, old, 60)
    recovered = time.monotonic() - back
    assert stack.procs["api"].pid == api_pid and stack.procs["api"].poll() is None
    assert all(v["status"] == "ACTIVE" for v in final.values())
    assert stack.get("/v1/vms/during").status_code == 404
    nothing_orphaned(stack)
    report("PostgreSQL down %.1f s: API answering again in %.1f s, 10 creates and 3 deletes "
           "done after it returned in" % (outage, api_back), recovered,
           "API 503 in %.2f s while down" % answered)


# == 5. builds that never finish, deletes on a dead host: the watchdog =================

class Tarpit:
    """An image server that accepts a download and says nothing until released."""

    def __init__(self, path):
        self.release = threading.Event()
        self.requests = []
        tarpit = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                tarpit.requests.append(self.path)
                tarpit.release.wait(60)
                with open(path, "rb") as f:
                    data = f.read()
                try:
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def test_builds_that_never_finish_and_deletes_on_a_dead_host(make_stack, tmp_path):
    build_timeout, down_after = 5, 6
    stack = make_stack(fast_conf(build_timeout=build_timeout,
                                 scheduler={"service_down_time": down_after}), compute=False)
    tarpit = Tarpit(stack.base_image)
    host = "silent-" + stack.tag[-6:]
    try:
        workdir = stack.start_extra_compute(host, extra_conf="image_api_url = %s" % tarpit.url)
        stack.hosts = {host: os.path.join(workdir, "instances")}
        proc = stack.procs["compute-" + host]

        # a) The host takes the build and goes silent (its image download hangs).
        t0 = time.monotonic()
        hung = create(stack, "hung")
        wait_for(lambda: tarpit.requests, 30, what="the build to start")
        vm = stack.wait_status(hung, "ERROR", timeout=build_timeout + 15)
        to_error = time.monotonic() - t0
        message = vm["fault"]["message"]
        assert host in message and "%d s" % build_timeout in message, message
        assert "build_timeout" in message
        with _engine(stack).connect() as c:
            assert c.execute(sa.text("SELECT count(*) FROM allocations")).scalar() == 0
            assert tuple(c.execute(sa.text(
                "SELECT vcpus_used, memory_mb_used, local_gb_used FROM compute_nodes "
                "WHERE host = :h"), {"h": host}).one()) == (0, 0, 0)
        # ... then finishes after all: its "spawned" loses, it destroys the domain.
        released = time.monotonic()
        tarpit.release.set()
        wait_for(lambda: "VM %s: built, but no longer wanted here" % hung in log(
            stack, "compute-" + host), 60, what="the late build to be undone")
        nothing_orphaned(stack)
        cleaned = time.monotonic() - released
        assert stack.vm(hung)["status"] == "ERROR"
        report("host took a build and went silent: ERROR (allocation released) after", to_error,
               "build_timeout %d s; the late spawn destroyed %.1f s after it finished"
               % (build_timeout, cleaned))

        # b) The host is frozen (SIGSTOP): a build sent to it, a delete sent to it.
        victim = create(stack, "victim")
        stack.wait_status(victim, "ACTIVE", timeout=60)
        proc.send_signal(signal.SIGSTOP)
        t0 = time.monotonic()
        frozen = create(stack, "frozen")
        assert stack.delete("/v1/vms/" + victim).status_code == 202
        vm = stack.wait_status(frozen, "ERROR", timeout=build_timeout + 15)
        frozen_error = time.monotonic() - t0
        assert host in vm["fault"]["message"]
        wait_gone(stack, [victim], down_after + 15)
        local_delete = time.monotonic() - t0
        with _engine(stack).connect() as c:
            assert c.execute(sa.text("SELECT count(*) FROM allocations")).scalar() == 0
        assert "mininova-" + victim in domain_names()  # the host has not heard yet
        proc.send_signal(signal.SIGCONT)
        resumed = time.monotonic()
        cleaned = nothing_orphaned(stack)
        report("host frozen (SIGSTOP): its build ERROR after", frozen_error,
               "its VM deleted locally after %.1f s (service_down_time %d s); domain gone "
               "%.1f s after the host resumed" % (local_delete, down_after,
                                                  time.monotonic() - resumed))
        for vm_id in (hung, frozen):
            assert stack.delete("/v1/vms/" + vm_id).status_code == 202
        wait_gone(stack, [hung, frozen], 30)
        nothing_orphaned(stack)
    finally:
        tarpit.close()


@pytest.mark.real_services("postgresql")
def test_watchdog_rules(pg_db, conf, recorder):
    """The watchdog's decisions, one pass at a time, on a real PostgreSQL."""
    conf.set_override("build_timeout", 60, group="compute")
    conf.set_override("task_resend_after", 20, group="conductor")
    conf.set_override("service_down_time", 30, group="scheduler")
    conductor_rpcapi, compute = recorder(), recorder()
    dog = Watchdog(pg_db, conductor_rpcapi, compute, conf)
    now = utcnow()

    def ago(seconds):
        return now - datetime.timedelta(seconds=seconds)
    conductor = ConductorManager(pg_db)
    for host, beat in (("up", 0), ("down", 100)):
        conductor.service_heartbeat(context.get_admin_context(), host, "mininova-compute",
                                    {"vcpus": 8, "memory_mb": 8192, "local_gb": 100})
        with pg_db.transaction() as s:
            s.execute(sa.update(Service).where(Service.host == host)
                      .values(last_heartbeat=ago(beat)))

    def vm(name, vm_state, task, host=None, age=0, claim=False):
        with pg_db.transaction() as s:
            inst = db_api.instance_create(
                s, name=name, project_id="p", image_id=str(uuid.uuid4()), flavor_id="1",
                vcpus=1, memory_mb=128, root_gb=1, vm_state=vm_state, task_state=task,
                host=host)
            actions.action_begin(s, inst.id, "req-" + name, "create", "p", None, "accepted",
                                 "api")
            if claim:
                assert allocations.allocate(s, inst.id, host, Resources(1, 128, 1),
                                            (16.0, 1.5, 1.0))
            s.execute(sa.update(Instance).where(Instance.id == inst.id)
                      .values(updated_at=ago(age)))
            return inst.id

    unplaced = vm("unplaced", "building", "scheduling", age=61)
    silent = vm("silent", "building", "spawning", "up", age=61, claim=True)
    slow = vm("slow", "building", "scheduling", age=21)
    fresh = vm("fresh", "building", "spawning", "up", age=1, claim=True)
    on_dead = vm("on-dead", "active", "deleting", "down", age=1, claim=True)
    lost_delete = vm("lost-delete", "active", "deleting", "up", age=21, claim=True)
    recent_delete = vm("recent-delete", "active", "deleting", "up", age=1, claim=True)

    done = dog.run()
    assert sorted(done["expired"]) == sorted([unplaced, silent])
    assert done["deleted"] == [on_dead]
    assert sorted(done["resent"]) == sorted([slow, lost_delete])
    assert [(m, a, k) for m, a, k in conductor_rpcapi.calls] == [
        ("build_instances", (slow,), {})]
    assert [(m, a) for m, a, _ in compute.calls] == [("terminate_instance", ("up", lost_delete))]
    with pg_db.transaction() as s:
        rows = {i.id: i for i in s.scalars(sa.select(Instance))}
        held = set(s.scalars(sa.select(Allocation.consumer_id)))
        finished = {a.instance_id: a for a in s.scalars(sa.select(InstanceAction))}
    assert rows[silent].vm_state == "error" and rows[silent].host == "up"
    assert "host up" in rows[silent].fault and "60 s" in rows[silent].fault
    assert "no scheduler placed" in rows[unplaced].fault
    assert finished[silent].result == "error" and "build_timeout" in finished[silent].message
    assert rows[on_dead].deleted_at is not None and finished[on_dead].result == "success"
    assert rows[fresh].vm_state == "building" and rows[recent_delete].deleted_at is None
    assert held == {fresh, lost_delete, recent_delete}

    # A late "spawned" from the silent host loses; the host learns it never ran.
    ctxt = context.RequestContext(request_id="req-late")
    assert conductor.instance_spawned(ctxt, silent, "up", "running") is False
    assert conductor.instance_failed_builds_for_host(ctxt, "up") == [silent]
    # Resends are not repeated at every pass, and nothing else changes.
    again = dog.run()
    assert again == {"expired": [], "deleted": [], "resent": []}
    # A VM that moved on after the watchdog looked is left alone.
    with pg_db.transaction() as s:
        row = s.execute(sa.select(Instance.id, Instance.host, Instance.vm_state,
                                  Instance.task_state, Instance.updated_at, Instance.project_id,
                                  Instance.user_id).where(Instance.id == fresh)).one()
        db_api.instance_update_if(s, fresh, {"vm_state": "active", "task_state": None})
    assert dog._expire_build(row, utcnow(), 60) is False

    # The broker away: the resends of the pass stop, the database work goes on.
    broken = recorder(fail_with=exception.ServiceUnavailable(
        reason="message broker unreachable: [Errno 111] Connection refused"))
    stuck = vm("stuck-delete", "active", "deleting", "up", age=21)
    on_dead_too = vm("on-dead-too", "active", "deleting", "down", age=1)
    done = Watchdog(pg_db, broken, broken, conf).run()
    assert done == {"expired": [], "deleted": [on_dead_too], "resent": []}
    # Resends are limited (a wedged host must not collect blocked requests).
    compute3 = recorder()
    dog3 = Watchdog(pg_db, recorder(), compute3, conf)
    for _ in range(watchdog.MAX_RESENDS + 2):
        dog3.run()
        for key, (count, _) in list(dog3._resent.items()):
            dog3._resent[key] = (count, float("-inf"))  # as if task_resend_after passed
    assert [a for _, a, _ in compute3.calls].count(("up", stuck)) == watchdog.MAX_RESENDS


@pytest.mark.real_services()  # the in-memory bus
def test_rpc_cast_failure_policy():
    """What the RPC server does with a cast whose handler failed (memory bus)."""
    transport = rpc.get_transport("memory://faults-" + uuid.uuid4().hex)
    ctxt = context.RequestContext(project_id="p")

    class Endpoint:
        RPC_METHODS = frozenset({"work", "bug", "expected"})

        def __init__(self):
            self.down, self.tries, self.done = True, [], []

        def work(self, ctxt, n):
            self.tries.append(n)
            if self.down:
                raise exception.ServiceUnavailable(reason="database unreachable")
            self.done.append(n)

        def bug(self, ctxt):
            raise KeyError("a bug")

        def expected(self, ctxt):
            raise exception.InstanceNotFound(instance="x")

    endpoint = Endpoint()
    server = rpc.RPCServer(transport, rpc.Target("faults"), [endpoint], workers=2,
                           retry_delay=0.01, retry_max_delay=0.05, retry_limit=5)
    server.start()
    client = rpc.RPCClient(transport, rpc.Target("faults"), timeout=5)
    try:
        # The service it needs is away: tried again later, done once it is back.
        client.cast(ctxt, "work", n=1)
        wait_for(lambda: len(endpoint.tries) >= 3, 5, what="retries")
        endpoint.down = False
        wait_for(lambda: endpoint.done == [1], 5, what="the cast done")
        assert transport.dead_letters == []
        # ... but never forever: after retry_limit tries it is dead-lettered.
        endpoint.down, endpoint.tries = True, []
        client.cast(ctxt, "work", n=2)
        wait_for(lambda: len(transport.dead_letters) == 1, 5, what="the poison dead-lettered")
        assert endpoint.tries == [2] * 6
        # A bug, or arguments that do not fit: dead-lettered at once; an
        # expected outcome (a MininovaException): acked.
        client.cast(ctxt, "bug")
        client.cast(ctxt, "work", m=3)
        client.cast(ctxt, "expected")
        wait_for(lambda: len(transport.dead_letters) == 3, 5, what="dead letters")
        assert ['"bug"' in b or '"m": 3' in b for _, b in transport.dead_letters[1:]] == [True] * 2
        # A call is answered with the failure and not retried by the server.
        endpoint.tries = []
        with pytest.raises(exception.ServiceUnavailable):
            client.call(ctxt, "work", n=4)
        assert endpoint.tries == [4]
        # A server that stops gives back what waits for a retry.
        server.retry_delay = server.retry_max_delay = 30
        client.cast(ctxt, "work", n=5)
        wait_for(lambda: 5 in endpoint.tries, 5, what="the cast tried")
    finally:
        server.stop()
        server.wait(timeout=5)
    assert transport.queue_length("faults") == 1
    assert len(transport.dead_letters) == 3


# == 6. garbage on every queue ==========================================================

def test_garbage_on_every_queue_is_dead_lettered(make_stack):
    stack = make_stack(fast_conf())
    marker = uuid.uuid4().hex
    queues = {"scheduler": ("schedule_instance", {"instance_id": str(uuid.uuid4())},
                            {"instance_id": ["not", "a", "string"]}),
              "conductor": ("instance_get", {"instance_id": str(uuid.uuid4())},
                            {"instance_id": {"not": "a string"}}),
              "compute." + stack.host: ("terminate_instance", {"instance_id": str(uuid.uuid4())},
                                        None)}
    ctxt = {"request_id": "req-" + marker}

    def body(method, args, version="1.0", ctx=None):
        return json.dumps({"version": version, "method": method, "args": args,
                           "context": ctx if ctx is not None else ctxt})

    conn = kombu.Connection("amqp://" + stack.transport_url.split("://", 1)[1],
                            connect_timeout=5)
    try:
        channel = conn.channel()
        producer = kombu.Producer(channel)
        reply_queue = kombu.Queue("faults-reply-" + marker, exclusive=True, auto_delete=True)
        reply_queue(channel).declare()
        sent = {}
        for queue, (method, good_args, wrong_types) in queues.items():
            garbage = [
                ("this is not json " + marker).encode(),
                b"\xff\xfe\x00 undecodable " + marker.encode(),
                json.dumps([1, 2, marker]).encode(),
                body("no_such_method", {}).encode(),
                body("_private_helper", {}).encode(),
                body(method, good_args, version="2.0").encode(),
                body(method, {"bogus": marker}).encode(),
                body(method, good_args, ctx={"request_id": marker, "roles": 5}).encode(),
            ]
            headers = [{}] * len(garbage)
            garbage.append(body(method, good_args).encode())  # kombu cannot even decode it
            headers.append({"compression": "application/x-" + marker})
            if wrong_types is not None:  # fits the signature, breaks the handler
                garbage.append(body(method, wrong_types).encode())
                headers.append({})
            for text, extra in zip(garbage, headers):
                producer.publish(text, exchange="mininova", routing_key=queue,
                                 content_type="application/json", content_encoding="utf-8",
                                 headers=extra, delivery_mode=2)
            sent[queue] = len(garbage)
        # A call that cannot be dispatched: the caller hears so at once.
        producer.publish(body("no_such_method", {}), exchange="mininova",
                         routing_key="scheduler", content_type="application/json",
                         content_encoding="utf-8", reply_to=reply_queue.name,
                         correlation_id=marker)
        sent["scheduler"] += 1
        t0 = time.monotonic()
        dead = []

        def all_dead():
            while True:
                message = channel.basic_get("mininova.dead", no_ack=True)
                if message is None:
                    return len(dead) >= sum(sent.values())
                dead.append(message)
        wait_for(all_dead, 120, what="%d messages in mininova.dead" % sum(sent.values()))
        elapsed = time.monotonic() - t0
        by_queue = {}
        for message in dead:
            death = (message.properties.get("application_headers") or {})["x-death"][0]
            assert death["reason"] == "rejected"
            by_queue[death["queue"]] = by_queue.get(death["queue"], 0) + 1
        assert by_queue == sent
        reply = channel.basic_get(reply_queue.name, no_ack=True)
        assert reply is not None
        text = reply.body.decode() if isinstance(reply.body, bytes) else reply.body
        assert "NoSuchMethod" in text, text
        for queue in queues:  # nothing left to loop on
            assert channel.queue_declare(queue=queue, passive=True).message_count == 0
        assert channel.basic_get("mininova.dead", no_ack=True) is None
    finally:
        conn.release()
    for name, proc in stack.procs.items():
        assert proc.poll() is None, "%s died" % name
    t1 = time.monotonic()
    vm_id = create(stack, "after-garbage")
    stack.wait_status(vm_id, "ACTIVE", timeout=60)
    assert stack.delete("/v1/vms/" + vm_id).status_code == 202
    wait_gone(stack, [vm_id], 30)
    nothing_orphaned(stack)
    report("%d malformed or unknown messages on scheduler, conductor, compute: all "
           "dead-lettered in" % sum(sent.values()), elapsed,
           "daemons alive; a VM built and deleted after it in %.1f s" % (time.monotonic() - t1))
