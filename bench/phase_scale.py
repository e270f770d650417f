"""P3: the scale simulation (bench.scale_sim) on in-memory fake hosts, after the
stack of the other phases is gone."""
import contextlib
import tempfile

from bench import scale_sim
from bench.harness import log


def run(bench):
    a = bench.args
    log("P3: scale simulation, %d hosts, %d VMs (2 schedulers)", a.hosts, a.vms)
    observer = _SimProfiler(bench.profiler)
    with tempfile.TemporaryDirectory(prefix="mininova-sim-", dir=bench.workdir) as wd:
        try:
            sim = scale_sim.run(hosts=a.hosts, vms=a.vms, schedulers=2, workdir=wd,
                                threads=a.sim_threads, observer=observer)
        finally:
            observer.phases.close()
    bench.results["p3"] = sim
    bench.results["p3_vms_per_s"] = sim["vms_per_s"]
    bench.results["p3_overcommit"] = sim["overcommit"]
    bench.results["p3_allocation_mismatch"] = sim["allocation_mismatch"]
    bench.results["p3_active"] = sim["active"]
    bench.results["p3_cpu_ms_per_vm"] = {k: round(v * 1000.0 / max(1, sim["active"]), 1)
                                        for k, v in sim["cpu_s"].items()}
    log("  %s", sim)




class _SimProfiler:
    """With --profile: py-spy on the sim's API, schedulers and two of its
    computes from the start of its burst of POSTs until every VM settled."""

    def __init__(self, profiler):
        self.profiler = profiler
        self.phases = contextlib.ExitStack()

    def burst_started(self, stack):
        names = ["api"] + sorted(n for n in stack.procs if n.startswith(("scheduler", "conductor")))
        names += sorted(n for n in stack.procs if n.startswith("compute"))[:2]
        self.phases.enter_context(self.profiler.phase(
            "p3", {n: stack.procs[n].pid for n in names}))

    def burst_settled(self, stack):
        self.phases.close()
