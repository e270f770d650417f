"""When libvirt told of a domain's lifecycle events: ``virsh event --loop
--timestamp`` in the background (virsh stamps each event as it receives it,
in UTC with milliseconds), so a phase can time from the event itself, not
only from the command that caused it."""
import datetime
import re
import subprocess
import threading
import time

LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)([+-]\d{4}): event 'lifecycle' "
                  r"for domain '([^']+)': (\w+)")


class LifecycleEvents:
    def __init__(self, uri):
        self._proc = subprocess.Popen(
            ["virsh", "-c", uri, "event", "--event", "lifecycle", "--loop", "--timestamp"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self._seen = []  # (domain name, event, wall time)
        self._cond = threading.Condition()
        threading.Thread(target=self._read, name="virsh-events", daemon=True).start()

    def _read(self):
        for line in self._proc.stdout:
            m = LINE.match(line)
            if not m:
                continue
            at = datetime.datetime.strptime(m.group(1) + m.group(2),
                                            "%Y-%m-%d %H:%M:%S.%f%z").timestamp()
            with self._cond:
                self._seen.append((m.group(3), m.group(4), at))
                self._cond.notify_all()

    def wait(self, domain, event, since=0.0, timeout=30):
        """The wall time of ``domain``'s first ``event`` ("Started",
        "Stopped", ...) stamped at or after ``since`` (time.time())."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for name, kind, at in self._seen:
                    # virsh stamps to the millisecond: allow that much before ``since``.
                    if name == domain and kind == event and at >= since - 0.001:
                        return at
                left = deadline - time.monotonic()
                if left <= 0 or self._proc.poll() is not None:
                    raise RuntimeError("no %s event of %s seen from virsh within %d s"
                                       % (event, domain, timeout))
                self._cond.wait(left)

    def close(self):
        self._proc.terminate()
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
