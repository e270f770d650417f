"""floor / P1 / P5, interleaved sample by sample so that both see the same
host: one floor boot, one POST -> ACTIVE, one external ``virsh destroy`` ->
SHUTOFF in the API, timed from the start of ``virsh destroy`` and from
libvirt's Stopped event (as virsh's own event listener stamped it).

Each P1 and P5 sample also keeps what the daemons wrote in the VM's row
(created_at by the API, launched_at and updated_at by the conductor) as
offsets from the sample's start on the wall clock: independent evidence
that the interval timed holds the work it claims to (the smoke test checks
0 <= created <= launched <= the P1 sample, and the SHUTOFF write within the
P5 sample)."""
import datetime
import statistics
import subprocess
import time

import sqlalchemy as sa

from bench.harness import URI, log, ms, pct
from bench.lifecycle_events import LifecycleEvents


def run(bench):
    n = bench.args.samples
    log("floor / P1 / P5: %d samples each, interleaved", n)
    client = bench.client()
    floor_s, p1_s, p5_s, virsh_s, post_s, vm_ids = [], [], [], [], [], []
    p5_event_s = []  # libvirt's Stopped event -> SHUTOFF in the API
    lifecycle = LifecycleEvents(URI)
    floor_steps = []
    p1_evidence, p5_evidence = [], []
    with bench.profiler.phase("p1", bench.daemon_pids()):
        for i in range(n):
            steps = {}
            seconds, floor_id = bench.floor.boot(steps=steps)
            bench.floor.destroy(floor_id)
            floor_s.append(seconds)
            floor_steps.append(steps)

            t0, wall0 = time.monotonic(), time.time()
            post, vm_id, _ = bench.post_vm(client, "p1-%03d" % i)
            p1_s.append(bench.seen_in_api(client, [vm_id], "ACTIVE") - t0)
            post_s.append(post)
            vm_ids.append(vm_id)
            row = row_times(bench, vm_id)
            p1_evidence.append({"sample_ms": ms(p1_s[-1]),
                                "created_ms": _offset_ms(row.created_at, wall0),
                                "launched_ms": _offset_ms(row.launched_at, wall0)})

            # P5: an external destroy, seen in the API as SHUTOFF. The domain's
            # Started event seen first proves virsh's listener is registered.
            domain = "mininova-" + vm_id
            lifecycle.wait(domain, "Started")
            t0, wall0 = time.monotonic(), time.time()
            proc = subprocess.run(["virsh", "-c", URI, "destroy", domain],
                                  capture_output=True, text=True)
            virsh_done = time.monotonic()
            if proc.returncode != 0:
                raise RuntimeError("virsh destroy failed: %s" % proc.stderr)
            p5_s.append(bench.seen_in_api(client, [vm_id], "SHUTOFF", timeout=30) - t0)
            virsh_s.append(virsh_done - t0)
            stopped = lifecycle.wait(domain, "Stopped", since=wall0)
            p5_event_s.append(p5_s[-1] - (stopped - wall0))
            row = row_times(bench, vm_id)
            p5_evidence.append({"sample_ms": ms(p5_s[-1]), "power_state": row.power_state,
                                "updated_ms": _offset_ms(row.updated_at, wall0)})
            bench.delete_and_wait([vm_id])
            log("  sample %d/%d: floor %.0f ms, P1 %.0f ms, P5 %.0f ms (%.0f ms after the "
                "event)", i + 1, n, floor_s[-1] * 1000, p1_s[-1] * 1000, p5_s[-1] * 1000,
                p5_event_s[-1] * 1000)
    lifecycle.close()
    client.close()
    r = bench.results
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
    r["p1_steps"] = bench.breakdown(vm_ids)
    r["p5_samples_ms"] = [ms(s) for s in p5_s]
    r["p5_p50_ms"] = ms(pct(p5_s, 50))
    r["p5_max_ms"] = ms(max(p5_s))
    r["p5_virsh_p50_ms"] = ms(pct(virsh_s, 50))
    r["p5_virsh_max_ms"] = ms(max(virsh_s))
    r["p5_event_samples_ms"] = [ms(s) for s in p5_event_s]
    r["p5_event_p50_ms"] = ms(pct(p5_event_s, 50))
    r["p5_event_max_ms"] = ms(max(p5_event_s))
    r["p1_db_evidence"] = p1_evidence
    r["p5_db_evidence"] = p5_evidence


def row_times(bench, vm_id):
    """The VM's row as the daemons wrote it (untimed)."""
    with bench.engine.connect() as c:
        return c.execute(sa.text(
            "SELECT created_at, launched_at, updated_at, power_state FROM instances "
            "WHERE id = :id"), {"id": vm_id}).one()


def _offset_ms(naive_utc, wall0):
    """Milliseconds from ``wall0`` (time.time()) to a naive-UTC DB timestamp."""
    if naive_utc is None:
        return None
    at = naive_utc.replace(tzinfo=datetime.timezone.utc).timestamp()
    return round((at - wall0) * 1000.0, 1)
