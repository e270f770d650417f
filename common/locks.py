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
        with self._using(key) as lock:
            with lock:
                yield

    @contextlib.contextmanager
    def try_lock(self, key):
        """``with locks.try_lock(key) as held:`` holds the lock of ``key`` if
        it was free (``held`` True), else goes on at once (``held`` False)."""
        with self._using(key) as lock:
            held = lock.acquire(blocking=False)
            try:
                yield held
            finally:
                if held:
                    lock.release()

    @contextlib.contextmanager
    def _using(self, key):
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
            self._users[key] += 1
        try:
            yield lock
        finally:
            with self._guard:
                self._users[key] -= 1
                if not self._users[key]:
                    del self._users[key]
                    del self._locks[key]
