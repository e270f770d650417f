"""libvirt lifecycle events -> the VM's power state in the DB, at once.

Events are only hints: for each, the domain's actual state is read back and
reported (level-based). The read is taken under the VM's lock, without
waiting for it: while a task of this host holds it (a hard reboot's destroy
and start, a stop, a move's step), the read is tried again shortly after,
and that task reports its own end state meanwhile (the conductor ignores a
sync for a VM with a task in progress). So a reboot never shows a stray
SHUTOFF, and an external stop is reported as soon as libvirt tells it.

A stop-like event whose read shows the domain still changing (not yet in the
state the event announces, e.g. a guest-initiated reboot passing through
"shutdown") is read again after ``debounce`` seconds, and reported as it is
then. Several events of one domain before its read collapse into one."""
import logging
import threading
import time

from common import context, states

LOG = logging.getLogger(__name__)

# Stop-like events and the power states that confirm them.
SETTLES_TO = {
    "stopped": {states.SHUTDOWN, states.CRASHED, states.NOSTATE},
    "shutdown": {states.SHUTDOWN, states.CRASHED, states.NOSTATE},
    "crashed": {states.SHUTDOWN, states.CRASHED, states.NOSTATE},
    "suspended": {states.PAUSED_POWER, states.SHUTDOWN, states.NOSTATE},
    "pmsuspended": {states.SUSPENDED_POWER, states.SHUTDOWN, states.NOSTATE},
}
DEBOUNCED = set(SETTLES_TO)
RELEVANT = DEBOUNCED | {"started", "resumed"}

# What a sync answers.
DONE = "done"          # read and reported (or nothing to report)
BUSY = "busy"          # a task holds the VM's lock: ask again after BUSY_RETRY
CHANGING = "changing"  # the domain is not yet where the event said: after debounce
BUSY_RETRY = 0.05


class PowerEventSync:
    def __init__(self, debounce):
        self.debounce = debounce
        self._due = {}  # domain uuid -> (monotonic time to read it, expected power states)
        self._cond = threading.Condition()
        self._stopped = False
        self._sync = None
        self._thread = threading.Thread(target=self._run, name="power-events", daemon=True)

    def on_event(self, domain_uuid, event):
        """libvirt's event thread: only note the event (no libvirt calls here).
        The latest event is the best hint: it replaces a pending one."""
        if event not in RELEVANT:
            return
        self._schedule(domain_uuid, time.monotonic(), SETTLES_TO.get(event))

    def start(self, sync):
        """``sync(ctxt, instance_id, expected)`` reads the domain and reports
        it; ``expected``: the power states a stop-like event announced (None:
        report whatever is read). It answers DONE, BUSY or CHANGING."""
        self._sync = sync
        self._thread.start()

    def stop(self):
        with self._cond:
            self._stopped = True
            self._cond.notify()

    def _schedule(self, domain_uuid, due, expected, replace=True):
        with self._cond:
            if replace or domain_uuid not in self._due:
                self._due[domain_uuid] = (due, expected)
                self._cond.notify()

    def _take_due(self):
        with self._cond:
            while not self._stopped:
                now = time.monotonic()
                ready = [(u, e) for u, (t, e) in self._due.items() if t <= now]
                if ready:
                    for u, _ in ready:
                        del self._due[u]
                    return ready
                wait = min(t for t, _ in self._due.values()) - now if self._due else None
                self._cond.wait(wait)
            return []

    def _run(self):
        while True:
            ready = self._take_due()
            if not ready:
                return
            for domain_uuid, expected in ready:
                answer = self._sync_one(domain_uuid, expected)
                # A newer event noted meanwhile wins over these retries.
                if answer == BUSY:
                    self._schedule(domain_uuid, time.monotonic() + BUSY_RETRY, expected,
                                   replace=False)
                elif answer == CHANGING:
                    self._schedule(domain_uuid, time.monotonic() + self.debounce, None,
                                   replace=False)

    def _sync_one(self, domain_uuid, expected):
        ctxt = context.get_admin_context()
        token = context.set_current(ctxt)
        try:
            return self._sync(ctxt, domain_uuid, expected)
        except Exception:
            LOG.exception("power sync of %s after an event failed", domain_uuid)
            return DONE
        finally:
            context.reset_current(token)
