"""Optional sampling profiles of the daemons, one per benchmark phase
(``python -m bench.run --profile``): py-spy attached to each daemon's pid for
the duration of the phase, non-blocking (the daemon is never paused), written
as collapsed stacks (``<phase>-<daemon>.txt``, one ``frames count`` line per
stack, loadable in speedscope or flamegraph.pl) plus a summary of the
hottest functions (``summarize``)."""
import collections
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading


def py_spy():
    """The py-spy executable (next to this Python first), or None."""
    here = os.path.join(os.path.dirname(sys.executable), "py-spy")
    return here if os.access(here, os.X_OK) else shutil.which("py-spy")


class Profiler:
    MODES = {"active": [], "gil": ["--gil"], "idle": ["--idle"]}

    def __init__(self, outdir, enabled=True, rate=200, mode="active"):
        """``mode``: "active" (py-spy's default: threads not idle, which counts
        waits inside C calls such as a query in flight), "gil" (only the
        thread holding the GIL: where the CPU of Python goes) or "idle"
        (every thread, waiting ones too)."""
        self.outdir = outdir
        self.exe = py_spy() if enabled else None
        self.rate = rate
        self.mode_args = self.MODES[mode]
        self.files = []
        if enabled and self.exe is None:
            print("bench: --profile needs py-spy (pip install py-spy); not profiling",
                  file=sys.stderr)
        if self.exe:
            os.makedirs(outdir, exist_ok=True)

    @contextlib.contextmanager
    def phase(self, name, pids):
        """Profile ``pids`` ({daemon: pid}) while the block runs."""
        if not self.exe:
            yield
            return
        procs = []
        for daemon, pid in pids.items():
            path = os.path.join(self.outdir, "%s-%s.txt" % (name, daemon))
            cmd = [self.exe, "record", "--pid", str(pid), "--rate", str(self.rate),
                   "--format", "raw", "--nonblocking", "--threads", "--subprocesses",
                   "-o", path]
            cmd += self.mode_args
            procs.append((path, subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                                 stderr=subprocess.DEVNULL)))
        try:
            yield
        finally:
            for _, proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGINT)
            for path, proc in procs:
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                if os.path.exists(path):
                    self.files.append(path)


class PgActivity:
    """Samples pg_stat_activity of one database every ``interval`` s while the
    block runs: what its backends are doing (and waiting for), as counts."""

    def __init__(self, engine, db_name, interval=0.01):
        self.engine = engine
        self.db_name = db_name
        self.interval = interval
        self.counts = collections.Counter()
        self.samples = 0
        self._stop = threading.Event()

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self):
        import sqlalchemy as sa
        query = sa.text(
            "SELECT state, coalesce(wait_event_type, 'CPU'), coalesce(wait_event, ''), "
            "regexp_replace(left(query, 70), '\\s+', ' ', 'g') FROM pg_stat_activity "
            "WHERE datname = :db AND pid <> pg_backend_pid() AND state <> 'idle'")
        with self.engine.connect() as c:
            c = c.execution_options(isolation_level="AUTOCOMMIT")
            while not self._stop.wait(self.interval):
                self.samples += 1
                for row in c.execute(query, {"db": self.db_name}):
                    self.counts[" | ".join(str(x) for x in row)] += 1

    def top(self, n=12):
        """[(what, mean number of backends doing it)], busiest first."""
        return [(what, round(count / max(1, self.samples), 2))
                for what, count in self.counts.most_common(n)]


def load_collapsed(path):
    """[(frames, count)] of a py-spy raw file; frames outermost first."""
    stacks = []
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            frames, _, count = line.rpartition(" ")
            stacks.append((frames.split(";"), int(count)))
    return stacks


def summarize(path, top=15, contains=None):
    """(total samples, [(function, self %, total %)]) of the hottest
    functions; ``contains``: only stacks with a frame containing this text."""
    stacks = load_collapsed(path)
    if contains:
        stacks = [(fr, n) for fr, n in stacks if any(contains in f for f in fr)]
    total = sum(n for _, n in stacks) or 1
    own = collections.Counter()
    inclusive = collections.Counter()
    for frames, n in stacks:
        frames = [f for f in frames if not f.startswith(("thread (", "process "))]
        if not frames:
            continue
        own[frames[-1]] += n
        for f in set(frames):
            inclusive[f] += n
    rows = [(f, 100.0 * own[f] / total, 100.0 * inclusive[f] / total)
            for f, _ in inclusive.most_common(top)]
    return total, rows, [(f, 100.0 * n / total) for f, n in own.most_common(top)]


def main(argv=None):
    """python -m bench.profiling FILE [--contains TEXT] [--top N]"""
    import argparse
    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("file")
    p.add_argument("--contains")
    p.add_argument("--top", type=int, default=20)
    args = p.parse_args(argv)
    total, inclusive, own = summarize(args.file, args.top, args.contains)
    print("%d samples%s" % (total, " (stacks containing %r)" % args.contains
                            if args.contains else ""))
    print("\ninclusive (function: self%% / total%%):")
    for f, s, t in inclusive:
        print("  %5.1f %5.1f  %s" % (s, t, f))
    print("\nself:")
    for f, s in own:
        print("  %5.1f  %s" % (s, f))


if __name__ == "__main__":
    main()
