"""Locks by key (a VM's id, an image's id): work on one key is serialized,
work on different keys is not. A key's lock lives only while someone holds
or waits for it, so the table does not grow with every key ever used."""
import collections
import contextlib
import threading


class KeyedLocks:
    """``with locks.lock(key):`` holds the lock of ``key``; safe to share
    between threads."""

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
                if not self._users[key]:
                    del self._users[key]
                    del self._locks[key]
