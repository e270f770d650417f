"""P8 moves: a cold migration and a resize of a running tiny guest between
two lab sim hosts (deploy/lab/sim-host.sh, each its own libvirtd; INDEX 62
and 63), each beside its raw floor on the same hosts.

- cold migrate A -> B: POST {"migrate": {"host": B}} until VERIFY_RESIZE on B
  (seen in the VM's row, then confirmed by GET /v1/vms/<id>), and with the
  confirm until ACTIVE on B;
- resize B -> A to a flavor with 192 MB and a 2 GB disk: POST {"resize"}
  until VERIFY_RESIZE on A;
- the floor, with libvirt-python and qemu-img alone, on a floor domain of the
  same image booted on A: ACPI shutdown until shut off (what mininova's
  source does too), copy of its overlay to B's directory, rebase onto B's
  base, define and start on B until RUNNING (for the resize also grown to
  2 GB, with 192 MB). The copy + define + start part is reported alone too.

Samples are interleaved (one floor, one mininova). mininova's destination
downloads the set-aside overlay from the source's libvirtd (its MIGRATION_URI:
a storage volume stream over TCP, as between separate machines) and checks it
(qemu-img check); the floor copies the file by path, the cheapest way on one
machine, so the stream and the check are in the overhead."""
import os
import shutil
import statistics
import subprocess
import time

import libvirt

from bench.floor import Floor
from bench.harness import log, ms
from bench.p8_snapshot import step_durations
from mininova_lab import sim_compute
from mininova_lab.sim_host import SimHost
from mininova_lab.waiting import wait_for
from nova_compute.virt.libvirt import guest as vguest

BASE_DIR = "/var/lib/mininova-lab-resize"
INDEXES = (62, 63)
GROWN = ("p8.grown", 1, 192, 2)  # name, vCPUs, MB, GB
BOOTED = "MININOVA-GUEST-BOOTED"


def run(bench):
    n = max(1, bench.args.samples // 10)  # 2 in a full run: each sample boots four guests
    log("P8 moves: %d samples of a cold migration and a resize, interleaved with the "
        "floor", n)
    stack = bench.stack
    sims, computes = [], {}
    client = bench.client()
    results = {"migrate": [], "migrate_active": [], "resize": [], "floor_migrate": [],
               "floor_migrate_copy_start": [], "floor_resize": [], "migrate_steps": [],
               "resize_steps": []}
    try:
        for name, index in zip(("p8a", "p8b"), INDEXES):
            sim = SimHost("%s-%s" % (name, stack.tag[-4:]), index=index, base_dir=BASE_DIR)
            sim.up()
            sim.forward(stack.port)
            sims.append(sim)
            # No NIC, for the VMs as for the floor: what is timed is the disk's move
            # and the domain's (a sim host's network may carry other runs' DHCP entries).
            computes[sim.name] = sim_compute.start_compute(stack, sim, network="")
        a, b = sims
        wait_for(lambda: {a.name, b.name} <= stack.computes_up(), 90,
                 what="two sim compute hosts up")
        if GROWN[0] not in {f["name"] for f in stack.get("/v1/flavors").json()["flavors"]}:
            stack.manage("flavor", "create", GROWN[0], "--vcpus", str(GROWN[1]), "--ram",
                         str(GROWN[2]), "--disk", str(GROWN[3]))
        stack.set_disabled(stack.host, True)  # the moves stay between A and B
        with bench.profiler.phase("p8_moves", bench.daemon_pids()):
            for i in range(n):
                sample(bench, client, a, b, i, results)
    finally:
        stack.set_disabled(stack.host, False)
        # The sim hosts go away, but their services would count as up for
        # service_down_time: the next phases' VMs must not be placed there.
        for sim in sims:
            stack.set_disabled(sim.name, True)
        for proc in computes.values():
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(20)
                except Exception:
                    proc.kill()
        for sim in sims:
            sim.down()
        client.close()
    median = {k: statistics.median(v) for k, v in results.items()
              if v and not k.endswith("_steps")}
    bench.results.update({
        "p8_moves_samples": n,
        "p8_migrate_p50_ms": ms(median["migrate"]),
        "p8_migrate_active_p50_ms": ms(median["migrate_active"]),
        "p8_migrate_floor_p50_ms": ms(median["floor_migrate"]),
        "p8_migrate_floor_copy_start_p50_ms": ms(median["floor_migrate_copy_start"]),
        "p8_migrate_overhead_ms": ms(median["migrate"] - median["floor_migrate"]),
        "p8_resize_p50_ms": ms(median["resize"]),
        "p8_resize_floor_p50_ms": ms(median["floor_resize"]),
        "p8_resize_overhead_ms": ms(median["resize"] - median["floor_resize"]),
        # The steps of each move in the VM's action timeline (ms, median over samples).
        "p8_migrate_steps_p50_ms": _median_steps(results["migrate_steps"]),
        "p8_resize_steps_p50_ms": _median_steps(results["resize_steps"]),
    })


def _median_steps(samples):
    return {name: statistics.median(s[name] for s in samples if name in s)
            for name in sorted({k for s in samples for k in s})}


def sample(bench, client, a, b, i, results):
    stack = bench.stack
    # mininova: a VM booted on A (untimed), migrated to B, resized back to A.
    stack.set_disabled(b.name, True)
    try:
        _, vm_id, _ = bench.post_vm(client, "p8-move-%d" % i)
        bench.wait_status(client, vm_id, "ACTIVE", timeout=300)
    finally:
        stack.set_disabled(b.name, False)
    try:
        wait_booted(lambda: console(client, vm_id))
        t0 = time.monotonic()
        migrate_request = post(client, vm_id, {"migrate": {"host": b.name}})
        seen = bench.seen_in_api(client, [vm_id], "VERIFY_RESIZE", timeout=300)
        post(client, vm_id, {"confirm_resize": {}})
        active = bench.seen_in_api(client, [vm_id], "ACTIVE", timeout=300)
        check_host(client, vm_id, b.name)
        results["migrate"].append(seen - t0)
        results["migrate_active"].append(active - t0)
        wait_booted(lambda: console(client, vm_id))
        t0 = time.monotonic()
        resize_request = post(client, vm_id, {"resize": {"flavor": GROWN[0]}})
        seen = bench.seen_in_api(client, [vm_id], "VERIFY_RESIZE", timeout=300)
        check_host(client, vm_id, a.name)
        results["resize"].append(seen - t0)
        results["migrate_steps"].append(step_durations(client, vm_id, migrate_request))
        results["resize_steps"].append(step_durations(client, vm_id, resize_request))
        post(client, vm_id, {"confirm_resize": {}})
        bench.seen_in_api(client, [vm_id], "ACTIVE", timeout=300)
    finally:
        bench.delete_and_wait([vm_id])
    # The floor, on the bases mininova cached on both hosts.
    image_id = bench.tiny["id"]
    for kind, (memory_mb, root_gb) in (("migrate", (128, 1)), ("resize", GROWN[2:])):
        total, copy_start = floor_move(bench, a, b, image_id, memory_mb, root_gb, i)
        results["floor_" + kind].append(total)
        if kind == "migrate":
            results["floor_migrate_copy_start"].append(copy_start)
    log("  sample %d: migrate %.0f ms (floor %.0f ms, its copy+define+start %.0f ms), to "
        "ACTIVE with the confirm %.0f ms; resize %.0f ms (floor %.0f ms)", i + 1,
        results["migrate"][-1] * 1000, results["floor_migrate"][-1] * 1000,
        results["floor_migrate_copy_start"][-1] * 1000, results["migrate_active"][-1] * 1000,
        results["resize"][-1] * 1000, results["floor_resize"][-1] * 1000)


def floor_move(bench, a, b, image_id, memory_mb, root_gb, i):
    """(seconds of the whole, seconds of copy + define + start) of one raw
    cold move A -> B of a booted floor domain."""
    stack = bench.stack
    work = os.path.join(bench.workdir, "p8-floor")
    floor_a = Floor(a.libvirt_uri, os.path.join(sim_compute.cache_path(stack, a), image_id),
                    os.path.join(work, a.name), "qemu", 128, 1, 1, "writeback",
                    tag="p8a%d" % i)
    floor_b = Floor(b.libvirt_uri, os.path.join(sim_compute.cache_path(stack, b), image_id),
                    os.path.join(work, b.name), "qemu", memory_mb, 1, root_gb, "writeback",
                    tag="p8b%d" % i)
    _, floor_id = floor_a.boot()
    try:
        src = os.path.join(floor_a.workdir, floor_id, "disk")
        wait_booted(lambda: read(os.path.join(floor_a.workdir, floor_id, "console.log")))
        dom = floor_a.conn.lookupByUUIDString(floor_id)
        t0 = time.monotonic()
        dom.shutdown()
        while dom.state()[0] not in vguest.STOPPED_STATES:
            time.sleep(0.01)
        t1 = time.monotonic()
        dest_dir = os.path.join(floor_b.workdir, floor_id)
        os.makedirs(dest_dir)
        disk = os.path.join(dest_dir, "disk")
        shutil.copyfile(src, disk)
        subprocess.run(["qemu-img", "rebase", "-u", "-f", "qcow2", "-F", "qcow2", "-b",
                        floor_b.base_path, disk], check=True, capture_output=True)
        if root_gb > 1:
            subprocess.run(["qemu-img", "resize", "-q", disk, "%dG" % root_gb], check=True,
                           capture_output=True)
        moved = floor_b.conn.defineXML(floor_b.guest_config(floor_id, disk).to_xml())
        moved.create()
        while moved.state()[0] not in vguest.RUNNING_STATES:
            time.sleep(0.001)
        t2 = time.monotonic()
        return t2 - t0, t2 - t1
    finally:
        for floor in (floor_b, floor_a):
            try:
                floor.destroy(floor_id)
            except libvirt.libvirtError:
                pass
            floor.close()


def post(client, vm_id, body):
    """The request id of the accepted action."""
    code, answer, headers = client.request("POST", "/v1/vms/%s/action" % vm_id, body)
    if code != 202:
        raise RuntimeError("%s -> %s: %s" % (next(iter(body)), code, answer))
    return headers.get("X-Request-Id")


def check_host(client, vm_id, host):
    vm = client.request("GET", "/v1/vms/" + vm_id)[1]["vm"]
    if vm["host"] != host:
        raise RuntimeError("VM %s is on %s, not %s" % (vm_id, vm["host"], host))


def console(client, vm_id):
    code, body, _ = client.request("GET", "/v1/vms/%s/console?lines=200" % vm_id)
    return body.get("output", "") if code == 200 else ""


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def wait_booted(text):
    """Until the guest's boot marker shows (untimed): it then obeys ACPI."""
    wait_for(lambda: BOOTED in text(), 300, interval=0.5, what="the guest's boot marker")
