"""P6: resident memory (VmRSS, and its peak VmHWM) of each daemon after the
other phases."""
from bench.harness import log


def rss_mb(pid):
    """(VmRSS, VmHWM) of a process in MB, from /proc/<pid>/status."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = round(int(value.split()[0]) / 1024.0, 1)
    return out.get("VmRSS"), out.get("VmHWM")


def run(bench):
    rss, hwm = {}, {}
    for name, pid in bench.daemon_pids().items():
        rss[name], hwm[name] = rss_mb(pid)
    bench.results["p6_rss_mb"] = rss
    bench.results["p6_hwm_mb"] = hwm
    fakes = [rss_mb(p.pid)[0] for n, p in bench.stack.procs.items()
             if n.startswith("compute-")]
    if fakes:
        bench.results["p6_rss_fake_compute_mb"] = max(fakes)
    log("P6: RSS %s MB (peak %s)", rss, hwm)
