"""libvirt lifecycle events -> the VM's power state in the DB, within a second.

Events are only hints: for each, after a short delay, the domain's actual
state is read back and reported (level-based), so a stop followed at once by a
start (a reboot) reports 'running', never a stray SHUTOFF. Stop-like events
wait ``debounce`` seconds; others are read back at once. Several events of one
domain within the delay collapse into one read."""
import logging
import threading
import time

from common import context

LOG = logging.getLogger(__name__)

DEBOUNCED = {"stopped", "shutdown", "crashed", "suspended", "pmsuspended"}
RELEVANT = DEBOUNCED | {"started", "resumed"}


class PowerEventSync:
    def __init__(self, debounce):
        self.debounce = debounce
        self._due = {}  # domain uuid -> monotonic time to read it back
        self._cond = threading.Condition()
        self._stopped = False
        self._sync = None
        self._thread = threading.Thread(target=self._run, name="power-events", daemon=True)

    def on_event(self, domain_uuid, event):
        """libvirt's event thread: only note the event (no libvirt calls here)."""
        if event not in RELEVANT:
            return
        due = time.monotonic() + (self.debounce if event in DEBOUNCED else 0.0)
        with self._cond:
            self._due[domain_uuid] = max(due, self._due.get(domain_uuid, 0.0))
            self._cond.notify()

    def start(self, sync):
        """``sync(ctxt, instance_id)`` reads the domain and reports it."""
        self._sync = sync
        self._thread.start()

    def stop(self):
        with self._cond:
            self._stopped = True
            self._cond.notify()

    def _take_due(self):
        with self._cond:
            while not self._stopped:
                now = time.monotonic()
                ready = [u for u, t in self._due.items() if t <= now]
                if ready:
                    for u in ready:
                        del self._due[u]
                    return ready
                wait = min(self._due.values()) - now if self._due else None
                self._cond.wait(wait)
            return []

    def _run(self):
        while True:
            ready = self._take_due()
            if not ready:
                return
            for domain_uuid in ready:
                ctxt = context.get_admin_context()
                token = context.set_current(ctxt)
                try:
                    self._sync(ctxt, domain_uuid)
                except Exception:
                    LOG.exception("power sync of %s after an event failed", domain_uuid)
                finally:
                    context.reset_current(token)
