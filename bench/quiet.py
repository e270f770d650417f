"""Is the machine quiet enough to measure on? Before each phase the bench
samples the CPU time of the whole machine and of its own processes (itself,
its stack's daemons and their children) over one second: what else used is
``foreign`` CPU (another bench, another test run, a guest left running). A
phase waits for ``foreign`` to fall to the threshold and is refused when it
does not (its figures would not be comparable between runs).

A quiet machine can still be slow: a virtual CPU shares its physical core
with other machines' (seen here: one loop 2.5 to 4.4 s, minutes apart).
``reference_loop_ms`` times a fixed loop before each phase, and ``steal`` is
the time the hypervisor says it kept, so figures in CPU ms per request or VM
can be set against the machine's speed when they were taken."""
import os
import time

TICK = os.sysconf("SC_CLK_TCK")


REFERENCE_LOOP = 2_000_000


def machine_cpu_seconds():
    """(busy, total, steal) CPU seconds of the whole machine since boot."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already in user
    steal = fields[7] if len(fields) > 7 else 0
    return (total - idle) / TICK, total / TICK, steal / TICK


def reference_loop_ms(n=REFERENCE_LOOP):
    """This thread's CPU time for ``n`` additions in a Python loop: the
    machine's speed for interpreted code (the daemons' and the bench's)."""
    start = time.thread_time()
    total = 0
    for i in range(n):
        total += i
    return round((time.thread_time() - start) * 1000.0, 1)


def processes():
    """{pid: (ppid, name, CPU seconds)} of every process now."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                raw = f.read()
        except OSError:
            continue  # gone meanwhile
        name = raw[raw.index("(") + 1:raw.rindex(")")]
        rest = raw[raw.rindex(")") + 2:].split()
        out[int(entry)] = (int(rest[1]), name, (int(rest[11]) + int(rest[12])) / TICK)
    return out


def label(pid, name):
    """``name``, or for an interpreter what it runs ("python -m pytest")."""
    if not name.startswith("python"):
        return name
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            argv = f.read().decode(errors="replace").split("\0")
    except OSError:
        return name
    if "-m" in argv[:-1]:
        return "%s -m %s" % (name, argv[argv.index("-m") + 1])
    scripts = [a for a in argv[1:] if a and not a.startswith("-")]
    return "%s %s" % (name, os.path.basename(scripts[0])) if scripts else name


def descendants(roots, table):
    """``roots`` and every process below them in ``table``."""
    children = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    seen, todo = set(), [p for p in roots if p]
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo.extend(children.get(pid, ()))
    return seen


def sample(own_roots, seconds=1.0, read_machine=machine_cpu_seconds, read_processes=processes,
           sleep=time.sleep):
    """The CPU used during ``seconds``, in cores: {"machine", "own",
    "foreign", "steal", "top": [(name, pid, cores)] of the busiest
    foreign processes}, plus the load average."""
    busy0, total0, steal0 = read_machine()
    before = read_processes()
    sleep(seconds)
    busy1, total1, steal1 = read_machine()
    after = read_processes()
    cpus = os.cpu_count() or 1
    wall = (total1 - total0) / cpus or seconds
    own = descendants(own_roots, after)
    used = {pid: (after[pid][2] - before[pid][2]) / wall
            for pid in after if pid in before}
    own_cores = sum(c for pid, c in used.items() if pid in own)
    machine = (busy1 - busy0) / wall
    top = sorted(((after[pid][1], pid, round(c, 2)) for pid, c in used.items()
                  if pid not in own and c >= 0.02), key=lambda t: -t[2])[:5]
    top = [(label(pid, name), pid, c) for name, pid, c in top]
    try:
        with open("/proc/loadavg") as f:
            loadavg = f.read().split()[:3]
    except OSError:
        loadavg = None
    return {"machine": round(machine, 2), "own": round(own_cores, 2),
            "foreign": round(max(0.0, machine - own_cores), 2),
            "steal": round((steal1 - steal0) / wall, 2), "top": top,
            "loadavg": loadavg}


def wait_quiet(own_roots, threshold, max_wait, log, sampler=sample, clock=time.monotonic):
    """Sample until the foreign CPU is at most ``threshold`` cores or
    ``max_wait`` seconds passed; the last sample, with "quiet" and "waited_s"."""
    start = clock()
    while True:
        s = sampler(own_roots)
        s["quiet"] = s["foreign"] <= threshold
        s["waited_s"] = round(clock() - start, 1)
        if s["quiet"] or s["waited_s"] >= max_wait:
            return s
        log("  machine busy: %.2f cores used by others (%s); waiting for quiet",
            s["foreign"], describe_top(s["top"]))


def describe_top(top):
    return ", ".join("%s[%d] %.2f" % t for t in top) or "short-lived processes"
