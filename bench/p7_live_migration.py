"""P7: live migration of a running tiny guest between two lab hosts
(deploy/lab/sim-host.sh: a libvirtd of its own each, in its own network
namespace), mininova's against the same ``virsh migrate --live --p2p
--copy-storage-inc --persistent --undefinesource`` done directly
(mininova_lab/raw_migration.py), same guest (the raw one is defined from the
mininova VM's own domain XML), same hosts, interleaved, alternating A -> B
and B -> A.

Figures, medians of ``p7_samples`` migrations of each:
- total: mininova from POST .../action {"live_migrate"} to the migration
  record "completed" (seen in the DB, polled every POLL s), against the
  wall time of virsh migrate itself;
- downtime and time elapsed: libvirt's statistics of the completed job
  (dom.jobStats(VIR_DOMAIN_JOB_STATS_COMPLETED) on the destination) of both.
Goals: total <= raw + 300 ms, downtime <= raw + 50 ms.

Runs a stack of its own (no compute on this machine's libvirtd: the two sim
hosts' computes only), after the main stack's phases."""
import os
import statistics
import sys
import time

import libvirt
import sqlalchemy as sa

from bench.harness import TINY, log, ms
from mininova_lab import sim_compute
from mininova_lab.raw_migration import RawGuest
from mininova_lab.sim_host import SimHost
from mininova_lab.stack import Stack
from mininova_lab.waiting import wait_for

BASE_DIR = "/var/lib/mininova-lab-p7"
INDEXES = (74, 75)
ENDED = ("completed", "error", "cancelled")
# Seconds between two reads of the migration's status: coarser than the
# harness's DB_POLL, whose reads every 5 ms would take CPU from the two
# libvirtd and QEMU at the switch-over (the raw migration has no such reader).
POLL = 0.02


def run(bench):
    samples = bench.args.p7_samples
    log("P7: live migration between two lab hosts, %d of each, interleaved", samples)
    with _Lab(os.path.join(bench.workdir, "p7")) as lab:
        vm_id = lab.boot_vm()
        mini_xml = lab.sims[0].connect().lookupByUUIDString(vm_id).XMLDesc(
            libvirt.VIR_DOMAIN_XML_MIGRATABLE)
        raw = RawGuest.from_domain_xml(os.path.join(lab.workdir, "raw"), TINY, mini_xml)
        raw.start(lab.sims[0])
        mini, floor = [], []
        try:
            # Warm-up (untimed): each host's image cache, the computes' connections.
            for dest in (lab.sims[1], lab.sims[0]):
                lab.migrate(vm_id, dest)
                raw.migrate(dest)
            for n in range(samples):
                dest = lab.sims[(n + 1) % 2]
                mini.append(lab.migrate(vm_id, dest))
                floor.append(_raw(raw, dest))
        finally:
            raw.destroy()
    _report(bench, mini, floor)


def _raw(raw, dest):
    stats = raw.migrate(dest)
    return {"total_ms": stats["wall_ms"], "downtime_ms": stats.get("downtime"),
            "elapsed_ms": stats.get("time_elapsed")}


def _median(rows, key):
    values = [r[key] for r in rows if r.get(key) is not None]
    return round(statistics.median(values), 1) if values else None


def _report(bench, mini, floor):
    r = bench.results
    r["p7_samples"] = {"mininova": mini, "raw": floor}
    for who, rows in (("mininova", mini), ("raw", floor)):
        for key in ("total_ms", "downtime_ms", "elapsed_ms"):
            r["p7_%s_%s" % (who, key)] = _median(rows, key)
    log("P7: total %s ms (raw %s), downtime %s ms (raw %s), libvirt elapsed %s ms (raw %s)",
        r["p7_mininova_total_ms"], r["p7_raw_total_ms"], r["p7_mininova_downtime_ms"],
        r["p7_raw_downtime_ms"], r["p7_mininova_elapsed_ms"], r["p7_raw_elapsed_ms"])


class _Lab:
    """A stack without a local compute, and two sim hosts with a compute each."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.stack = Stack(workdir, network="", debug=False)
        self.sims, self.procs, self.engine = [], [], None

    def __enter__(self):
        try:
            self.stack.start(compute=False)
            self.stack.add_image("tiny", TINY)
            for name, index in zip(("p7a", "p7b"), INDEXES):
                sim = SimHost("%s-%s" % (name, self.stack.tag[-4:]), index=index,
                              base_dir=BASE_DIR)
                sim.up()
                sim.forward(self.stack.port)
                self.sims.append(sim)
                self.procs.append(self._compute(sim))
            wait_for(lambda: {s.name for s in self.sims} <= self.stack.computes_up(), 60,
                     what="two sim compute hosts up")
            self.engine = sa.create_engine(self.stack.db_url)
            return self
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise

    def __exit__(self, *exc):
        try:
            if self.stack.procs:
                self.stack.delete_all_vms(timeout=60)
        finally:
            for proc in self.procs:
                proc.terminate()
            for proc in self.procs:
                try:
                    proc.wait(20)
                except Exception:
                    proc.kill()
            for sim in self.sims:
                sim.down()
            if self.engine is not None:
                self.engine.dispose()
            self.stack.stop()
        return False

    def _compute(self, sim):
        return sim_compute.start_compute(self.stack, sim, network="")

    def boot_vm(self):
        self.stack.set_disabled(self.sims[1].name, True)
        try:
            r = self.stack.post("/v1/vms", {"name": "p7", "image": "tiny",
                                            "flavor": "m1.tiny"})
            assert r.status_code == 202, r.text
            vm_id = r.json()["vm"]["id"]
            vm = self.stack.wait_status(vm_id, "ACTIVE", timeout=180)
        finally:
            self.stack.set_disabled(self.sims[1].name, False)
        assert vm["host"] == self.sims[0].name, vm
        return vm_id

    def migrate(self, vm_id, dest):
        """One mininova live migration to ``dest``: total ms (POST to the
        record completed, seen in the DB), libvirt's downtime and elapsed."""
        started = time.monotonic()
        r = self.stack.post("/v1/vms/%s/action" % vm_id,
                            {"live_migrate": {"host": dest.name}})
        assert r.status_code == 202, r.text
        uuid = r.json()["migration"]
        query = sa.text("SELECT status FROM migrations WHERE uuid = :u")
        with self.engine.connect() as c:
            deadline = started + 300
            while True:
                status = c.execute(query, {"u": uuid}).scalar()
                c.rollback()
                if status in ENDED or time.monotonic() > deadline:
                    break
                time.sleep(POLL)
        total = ms(time.monotonic() - started)
        if status != "completed":
            raise RuntimeError("live migration %s to %s ended %s" % (uuid, dest.name, status))
        conn = dest.connect()
        try:
            stats = conn.lookupByUUIDString(vm_id).jobStats(
                libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
        finally:
            conn.close()
        # The VM's row follows in the same transaction as the record.
        self.stack.wait_status(vm_id, "ACTIVE", timeout=60)
        return {"total_ms": total, "downtime_ms": stats.get("downtime"),
                "elapsed_ms": stats.get("time_elapsed")}
