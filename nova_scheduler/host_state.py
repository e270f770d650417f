"""The scheduler's in-memory view of the compute hosts (Nova's HostState and
consume_from_request).

A snapshot of the hosts' DB rows is shared by the placements of this process
and read again when it is older than ``max_age``, when a VM asks that was
created (or returned to scheduling) after it was read (so that a host
disabled, added or back up before the request is seen by it), or after a
claim lost in the DB (another scheduler used the room). On top of the snapshot go the claims this process made that
the snapshot cannot contain yet. Choosing a host is then pure Python and
needs no DB round trip: the lock around it is held for microseconds, and the
atomic claim in the DB (one conditional UPDATE) stays the arbiter between
schedulers, so a stale view costs at most a retry on the next host, never an
over-commit. Each claim bumps its host's ``generation`` (as Placement does
for a resource provider), which tells exactly whether a snapshot already
counts one of our claims: never counted twice, never left out.
"""
import threading
import time

from common.db import hosts as db_hosts
from common.db.models import utcnow

MAX_AGE = 1.0  # seconds a snapshot serves before it is read again


class HostState:
    """What the scheduler knows of one compute host: its DB row plus the
    claims of this process the row does not show yet."""

    __slots__ = ("host", "disabled", "disabled_reason", "last_heartbeat", "vcpus",
                 "vcpus_used", "memory_mb", "memory_mb_used", "local_gb", "local_gb_used")

    def __init__(self, host, disabled, disabled_reason, last_heartbeat, vcpus, vcpus_used,
                 memory_mb, memory_mb_used, local_gb, local_gb_used):
        self.host = host
        self.disabled = disabled
        self.disabled_reason = disabled_reason
        self.last_heartbeat = last_heartbeat
        self.vcpus, self.vcpus_used = vcpus, vcpus_used
        self.memory_mb, self.memory_mb_used = memory_mb, memory_mb_used
        self.local_gb, self.local_gb_used = local_gb, local_gb_used

    @classmethod
    def from_row(cls, row):
        """From a ``common.db.hosts.host_rows`` row (its generation is the
        cache's business)."""
        return cls(**{name: getattr(row, name) for name in cls.__slots__})

    def consume(self, vcpus, memory_mb, disk_gb):
        """Count a VM placed here that the DB row does not show yet."""
        self.vcpus_used += vcpus
        self.memory_mb_used += memory_mb
        self.local_gb_used += disk_gb

    def free(self, total, used, ratio):
        return int(total * ratio) - used


class _Snapshot:
    def __init__(self, rows, read_wall, read_start):
        self.rows = rows
        self.read_wall = read_wall    # utcnow() when the read began
        self.read_start = read_start  # time.monotonic() when the read began
        self.stale = False


class Reservation:
    """Resources this process chose on a host for a VM, from the choice
    until a snapshot shows the claim. ``generation`` is the host's generation
    that the claim made (set once the claim's UPDATE ran): a snapshot showing
    that generation or a later one contains the claim."""

    def __init__(self, states, host, vcpus, memory_mb, disk_gb):
        self._states = states
        self.host, self.vcpus, self.memory_mb, self.disk_gb = host, vcpus, memory_mb, disk_gb
        self.generation = None

    def claimed(self, generation):
        self.generation = generation

    def cancel(self):
        """The claim was not made (no room in the DB, VM gone, error)."""
        self._states._drop(self)


class HostStateCache:
    """The HostState of every compute host, from a shared snapshot of
    their rows plus this process's reservations (see the module's doc)."""

    def __init__(self, db, max_age=MAX_AGE):
        self.db = db
        self.max_age = max_age
        self.lock = threading.Lock()  # guards the snapshot and the reservations
        self._snapshot = None
        self._reservations = []

    def needs_refresh(self, requested_at=None):
        """True if the snapshot is too old, marked stale, or older than
        ``requested_at`` (the VM's creation or return to scheduling)."""
        snap = self._snapshot
        return (snap is None or snap.stale
                or time.monotonic() - snap.read_start >= self.max_age
                or (requested_at is not None and snap.read_wall <= requested_at))

    def refresh_if_needed(self, requested_at=None, session=None):
        """Read the hosts again if ``needs_refresh``, in ``session`` if
        given (saves a transaction). Outside the lock."""
        if not self.needs_refresh(requested_at):
            return
        read_wall, read_start = utcnow(), time.monotonic()
        if session is not None:
            rows = db_hosts.host_rows(session)
        else:
            with self.db.transaction() as s:
                rows = db_hosts.host_rows(s)
        fresh = _Snapshot(rows, read_wall, read_start)
        with self.lock:
            current = self._snapshot
            if current is None or current.stale or current.read_start < fresh.read_start:
                self._snapshot = fresh

    def mark_stale(self):
        """Read the hosts again before the next choice (a claim was lost)."""
        snap = self._snapshot
        if snap is not None:
            snap.stale = True

    def hosts(self):
        """A HostState per host: the snapshot plus the reservations it cannot show.
        Call with ``lock`` held."""
        snap = self._snapshot
        if snap is None:
            return []
        by_host = {row.host: HostState.from_row(row) for row in snap.rows}
        generations = {row.host: row.generation for row in snap.rows}
        kept = []
        for r in self._reservations:
            if r.generation is not None and generations.get(r.host, -1) >= r.generation:
                continue  # the snapshot (and every later one) has the claim: forget it
            kept.append(r)
            host = by_host.get(r.host)
            if host is not None:
                host.consume(r.vcpus, r.memory_mb, r.disk_gb)
        self._reservations = kept
        return list(by_host.values())

    def reserve(self, host, vcpus, memory_mb, disk_gb):
        """Count a chosen host's resources as used (with ``lock`` held)."""
        reservation = Reservation(self, host, vcpus, memory_mb, disk_gb)
        self._reservations.append(reservation)
        return reservation

    def _drop(self, reservation):
        with self.lock:
            try:
                self._reservations.remove(reservation)
            except ValueError:
                pass
