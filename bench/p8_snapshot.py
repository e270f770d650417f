"""P8 snapshot: POST /v1/vms/<id>/action {"snapshot"} of a running tiny
guest -> the image active in the API and the VM idle again, against the raw
operation on a floor domain of the same image and settings, done with
libvirt-python and qemu-img alone: managedSave (what makes the running
guest's disk consistent), ``qemu-img convert -O qcow2`` of its overlay (the
flattened image), restore (create). The convert alone is reported too.

Samples are interleaved (one floor, one mininova) so that both see the same
host. The image's status is watched in its DB row (a primary-key SELECT
every DB_POLL s), then confirmed through GET /v1/images/<id>, whose answer
times it; the VM must also show no task. Each image is deleted, untimed."""
import os
import statistics
import subprocess
import time

import sqlalchemy as sa

from bench.harness import DB_POLL, log, ms, pct
from mininova_lab.waiting import wait_for


def run(bench):
    n = max(2, bench.args.samples // 4)
    log("P8 snapshot: %d samples, interleaved with the floor", n)
    client = bench.client()
    _, vm_id, _ = bench.post_vm(client, "p8-snapshot")
    bench.wait_status(client, vm_id, "ACTIVE")
    _, floor_id = bench.floor.boot()
    floor_s, convert_s, snap_s, sizes, steps = [], [], [], [], []
    try:
        with bench.profiler.phase("p8_snapshot", bench.daemon_pids()):
            for i in range(n):
                total, convert, size = floor_snapshot(bench, floor_id, i)
                floor_s.append(total)
                convert_s.append(convert)
                seconds, image_id, image_size, request_id = mininova_snapshot(bench, client,
                                                                              vm_id, i)
                snap_s.append(seconds)
                steps.append(step_durations(client, vm_id, request_id))
                sizes.append({"floor_bytes": size, "mininova_bytes": image_size})
                client.request("DELETE", "/image/v2/images/" + image_id)
                log("  sample %d/%d: floor %.0f ms (convert %.0f ms), snapshot %.0f ms", i + 1,
                    n, total * 1000, convert * 1000, seconds * 1000)
    finally:
        bench.floor.destroy(floor_id)
        bench.delete_and_wait([vm_id])
        client.close()
    p50, floor_p50 = statistics.median(snap_s), statistics.median(floor_s)
    bench.results.update({
        "p8_snapshot_samples": n,
        "p8_snapshot_p50_ms": ms(p50), "p8_snapshot_max_ms": ms(max(snap_s)),
        "p8_snapshot_floor_p50_ms": ms(floor_p50),
        "p8_snapshot_convert_p50_ms": ms(statistics.median(convert_s)),
        "p8_snapshot_overhead_ms": ms(p50 - floor_p50),
        "p8_snapshot_p95_ms": ms(pct(snap_s, 95)),
        "p8_snapshot_sizes": sizes,
        "p8_snapshot_steps_p50_ms": {
            name: statistics.median(s[name] for s in steps if name in s)
            for name in sorted({k for s in steps for k in s})},
    })


def step_durations(client, vm_id, request_id):
    """{event: ms} of the snapshot's steps in the VM's action timeline."""
    code, body, _ = client.request("GET", "/v1/vms/%s/actions/%s" % (vm_id, request_id))
    if code != 200:
        return {}
    return {e["event"]: e["duration_ms"] for e in body["action"]["events"]
            if e.get("duration_ms") is not None}


def floor_snapshot(bench, floor_id, i):
    """(seconds of the whole, seconds of the convert, bytes written)."""
    dom = bench.floor.conn.lookupByUUIDString(floor_id)
    disk = os.path.join(bench.floor.workdir, floor_id, "disk")
    target = os.path.join(bench.workdir, "p8-floor-%d.qcow2" % i)
    t0 = time.monotonic()
    dom.managedSave(0)
    t1 = time.monotonic()
    subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "qcow2", disk, target],
                   check=True, capture_output=True)
    t2 = time.monotonic()
    dom.create()  # restores the saved memory
    t3 = time.monotonic()
    size = os.path.getsize(target)
    os.unlink(target)
    return t3 - t0, t2 - t1, size


def mininova_snapshot(bench, client, vm_id, i):
    """(seconds from the POST to the image active in the API, image id, size,
    request id)."""
    t0 = time.monotonic()
    code, body, headers = client.request("POST", "/v1/vms/%s/action" % vm_id,
                                         {"snapshot": {"name": "p8-snap-%d" % i}})
    if code != 202:
        raise RuntimeError("snapshot -> %s: %s" % (code, body))
    image_id = body["image"]["id"]
    seen = wait_image_active(bench, client, image_id)
    # The VM back at rest (its task cleared in the same report): untimed check.
    wait_for(lambda: client.request("GET", "/v1/vms/" + vm_id)[1]["vm"]["task_state"] is None,
             60, interval=0.05, what="VM %s idle after its snapshot" % vm_id)
    code, body, _ = client.request("GET", "/v1/images/" + image_id)
    return seen - t0, image_id, body["image"]["size"], headers.get("X-Request-Id")


def wait_image_active(bench, client, image_id, timeout=300):
    deadline = time.monotonic() + timeout
    with bench.engine.connect() as c:
        query = sa.text("SELECT status FROM images WHERE id = :id")
        while True:
            status = c.execute(query, {"id": image_id}).scalar()
            c.commit()
            if status == "active":
                code, body, _ = client.request("GET", "/v1/images/" + image_id)
                seen = time.monotonic()
                if code == 200 and body["image"]["status"] == "active":
                    return seen
            if status in (None, "killed", "deleted"):
                raise RuntimeError("image %s is %s: the snapshot failed" % (image_id, status))
            if time.monotonic() > deadline:
                raise RuntimeError("image %s not active after %d s" % (image_id, timeout))
            time.sleep(DB_POLL)
