"""Per-VM locks: work on one VM is serialized, work on different VMs is not."""
import collections
import contextlib
import threading


class KeyedLocks:
    def __init__(self):
        self._guard = threading.Lock()
        self._locks = {}
        self._users = collections.Counter()

    @contextlib.contextmanager
    def lock(self, key):
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
            self._users[key] += 1
        try:
            with lock:
                yield
        finally:
            with self._guard:
                self._users[key] -= 1
                if not self._users[key]:  # forget idle locks: no growth per VM
                    del self._users[key]
                    del self._locks[key]
