"""Work in flight on this host that several collaborators must see.

``CancelRegistry``: a delete sets the VM's cancel event, so that a power task
waiting on a clean shutdown stops waiting at once (a delete wins).

``BuildTracker``: the builds running here, so that the power syncs that
lifecycle events ask for during a build wait for its end: the build reports
the state it reads itself, so the events of its own start cost no message.
"""
import threading
import time


class CancelRegistry:
    def __init__(self):
        self._events = {}
        self._lock = threading.Lock()

    def event(self, instance_id):
        """The VM's cancel event (made on first use), for a task to wait on."""
        with self._lock:
            return self._events.setdefault(instance_id, threading.Event())

    def cancel(self, instance_id):
        """Cut short whatever task of the VM is waiting now (a delete)."""
        self.event(instance_id).set()

    def forget(self, instance_id):
        """After the delete: nothing of the VM is kept."""
        with self._lock:
            self._events.pop(instance_id, None)


class BuildTracker:
    """Builds in progress: instance id -> monotonic time of the build's own
    read of the domain's state (None before it), and the syncs deferred
    meanwhile (instance id -> monotonic time they were asked for)."""

    def __init__(self):
        self._building = {}
        self._deferred = {}
        self._lock = threading.Lock()

    def started(self, instance_id):
        with self._lock:
            self._building[instance_id] = None

    def read_state(self, instance_id, read):
        """The build's own read of the domain's state (``read()``), for its
        report: any sync asked for before this read is covered by it."""
        read_at = time.monotonic()
        power_state = read()
        with self._lock:
            self._building[instance_id] = read_at
        return power_state

    def defer_sync(self, instance_id):
        """True (and the sync noted for the build's end) while the VM builds."""
        with self._lock:
            if instance_id not in self._building:
                return False
            self._deferred[instance_id] = time.monotonic()
            return True

    def ended(self, instance_id):
        """The build is over. True when a sync deferred during it is still
        due: asked for after its read of the state, or it never read one."""
        with self._lock:
            read_at = self._building.pop(instance_id, None)
            deferred_at = self._deferred.pop(instance_id, None)
        return deferred_at is not None and (read_at is None or deferred_at >= read_at)
