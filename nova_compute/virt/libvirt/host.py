"""The libvirt connection of one compute host, and the process's event loop.

One main connection per Host, opened lazily under a lock and reopened when it
died (libvirtd restarted); it carries the lifecycle events and keepalive.
libvirt connections may be used from many threads at once, but libvirtd
serves at most ``max_client_requests`` (5) calls of one connection at a time:
20 builds on one connection queue their short calls (lookup, define, state)
behind each other's ``create``. So a thread doing a sequence of calls (a
build, a power action) borrows a connection of its own for it
(``with host.borrowed_connection():``, during which ``get_connection()`` in
that thread returns it) from a pool of ``pool_size`` connections, opened at
start-up; when all are lent it shares the main one as before.

libvirt's default event loop runs in a daemon thread: it drives keepalive
(which notices a hung or restarted libvirtd) and domain events. A lifecycle
callback can be given to Host; it runs IN the event thread and must only queue
the event for another thread (calling libvirt from it can deadlock).
"""
import contextlib
import logging
import os
import threading

import libvirt

from common import exception

LOG = logging.getLogger(__name__)

# libvirt-python prints every error to stderr unless a handler is set; errors
# reach us as libvirtError anyway.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

KEEPALIVE_INTERVAL = 5   # seconds between keepalive probes
KEEPALIVE_COUNT = 3      # unanswered probes before the connection is closed

LIFECYCLE_EVENTS = {
    libvirt.VIR_DOMAIN_EVENT_DEFINED: "defined",
    libvirt.VIR_DOMAIN_EVENT_UNDEFINED: "undefined",
    libvirt.VIR_DOMAIN_EVENT_STARTED: "started",
    libvirt.VIR_DOMAIN_EVENT_SUSPENDED: "suspended",
    libvirt.VIR_DOMAIN_EVENT_RESUMED: "resumed",
    libvirt.VIR_DOMAIN_EVENT_STOPPED: "stopped",
    libvirt.VIR_DOMAIN_EVENT_SHUTDOWN: "shutdown",
    libvirt.VIR_DOMAIN_EVENT_PMSUSPENDED: "pmsuspended",
    libvirt.VIR_DOMAIN_EVENT_CRASHED: "crashed",
}

_event_loop_lock = threading.Lock()
_event_loop_thread = None


def start_event_loop():
    """Start libvirt's default event loop once per process. It must be
    registered before the first connection is opened, hence Host calls it."""
    global _event_loop_thread
    with _event_loop_lock:
        if _event_loop_thread is not None:
            return
        libvirt.virEventRegisterDefaultImpl()
        _event_loop_thread = threading.Thread(target=_run_event_loop,
                                              name="libvirt-event-loop", daemon=True)
        _event_loop_thread.start()


def _run_event_loop():
    while True:
        if libvirt.virEventRunDefaultImpl() < 0:
            LOG.error("libvirt event loop iteration failed")


def total_memory_mb(conn, fallback_mb):
    """getInfo()'s memory is what sysfs shows for the NUMA node(s), which can be
    far below the host's RAM (5.5 of 24 GB on a lab VM here); the node memory
    stats have the real total. The test driver has no stats: keep getInfo's."""
    try:
        return conn.getMemoryStats(libvirt.VIR_NODE_MEMORY_STATS_ALL_CELLS)["total"] // 1024
    except libvirt.libvirtError:
        return fallback_mb


def cpu_flags(cpuinfo_path="/proc/cpuinfo"):
    try:
        with open(cpuinfo_path, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "flags":
                    return set(value.split())
    except OSError:
        pass
    return set()


def detect_virt_type(configured, cpuinfo_path="/proc/cpuinfo", kvm_device="/dev/kvm"):
    """``auto`` means kvm only where the CPU shows vmx/svm AND /dev/kvm exists.

    A /dev/kvm alone proves nothing (nested set-ups expose one that cannot run
    guests, and type='kvm' then hangs), so the CPU flags decide.
    """
    flags = cpu_flags(cpuinfo_path)
    hw_virt = bool(flags & {"vmx", "svm"}) and os.path.exists(kvm_device)
    if configured == "auto":
        return "kvm" if hw_virt else "qemu"
    if configured == "kvm" and not hw_virt:
        LOG.warning("virt_type=kvm configured but the CPU shows no vmx/svm or %s is "
                    "missing; guests may fail to start or hang", kvm_device)
    return configured


class Host:
    def __init__(self, uri, lifecycle_callback=None, pool_size=0):
        """``lifecycle_callback(domain_uuid, event_name)``, if given, is called
        from the event thread for every domain lifecycle event of the connection
        (all domains, owned or not: the receiver filters). ``pool_size``:
        connections lent to threads besides the main one (0: everything shares
        the main connection, as the in-process test:// driver needs)."""
        self.uri = uri
        self._lifecycle_callback = lifecycle_callback
        self._lock = threading.Lock()
        self._conn = None
        self.pool_size = pool_size
        self._idle = []     # pooled connections nobody borrows now
        self._lent = 0      # pooled connections borrowed now
        self._borrowed = threading.local()  # .conn: this thread's, while borrowed
        start_event_loop()

    def get_connection(self):
        """The connection this thread borrowed (borrowed_connection), else the
        main one, (re)opened if needed. Raises HypervisorError."""
        conn = getattr(self._borrowed, "conn", None)
        if conn is not None:
            return conn
        with self._lock:
            conn = self._conn
            if conn is not None and self._is_alive(conn):
                return conn
            if conn is not None:
                LOG.warning("libvirt connection to %s is dead; reconnecting", self.uri)
                self._conn = None
                self._close_quietly(conn)
            self._conn = self._open(main=True)
            return self._conn

    @contextlib.contextmanager
    def borrowed_connection(self):
        """For the block, this thread's calls go over a pooled connection no
        other thread uses (the main one when the pool is exhausted or off).
        Nested blocks keep the outer one. Yields the connection."""
        if getattr(self._borrowed, "conn", None) is not None:
            yield self._borrowed.conn
            return
        conn = self._borrow()
        if conn is None:
            yield self.get_connection()
            return
        self._borrowed.conn = conn
        try:
            yield conn
        finally:
            self._borrowed.conn = None
            self._give_back(conn)

    def fill_pool(self):
        """Open the pool's connections now (at start-up): opened during a
        burst, each would wait for a libvirtd worker busy starting domains."""
        while True:
            with self._lock:
                if len(self._idle) + self._lent >= self.pool_size:
                    return
            conn = self._open(main=False)
            with self._lock:
                self._idle.append(conn)

    def _borrow(self):
        """A live pooled connection, or None (pool off or all lent)."""
        dead = []
        with self._lock:
            if self._lent >= self.pool_size:
                return None
            self._lent += 1
            conn = None
            while self._idle:
                candidate = self._idle.pop()
                if self._is_alive(candidate):
                    conn = candidate
                    break
                dead.append(candidate)  # libvirtd restarted since it was used
        for d in dead:
            self._close_quietly(d)
        if conn is not None:
            return conn
        try:
            return self._open(main=False)
        except BaseException:
            with self._lock:
                self._lent -= 1
            raise

    def _give_back(self, conn):
        with self._lock:
            self._lent -= 1
            if self._is_alive(conn) and len(self._idle) < self.pool_size:
                self._idle.append(conn)
                return
        self._close_quietly(conn)

    def close(self):
        with self._lock:
            conns, self._idle = [self._conn] + self._idle, []
            self._conn = None
        for conn in conns:
            if conn is not None:
                self._close_quietly(conn)

    @staticmethod
    def _is_alive(conn):
        try:
            return conn.isAlive() == 1
        except libvirt.libvirtError:
            return False

    def _open(self, main):
        """A new connection; the main one also gets the close and lifecycle
        callbacks (pooled ones are only lent for calls)."""
        try:
            conn = libvirt.open(self.uri)
        except libvirt.libvirtError as exc:
            raise exception.HypervisorError(
                reason="cannot connect to libvirt at %s: %s" % (self.uri, exc))
        try:
            conn.setKeepAlive(KEEPALIVE_INTERVAL, KEEPALIVE_COUNT)
        except libvirt.libvirtError:
            pass  # local drivers (test://) have no keepalive; nothing to detect there
        if not main:
            return conn
        try:
            conn.registerCloseCallback(self._on_close, None)
        except libvirt.libvirtError:
            pass  # not every driver supports it; isAlive() still tells
        if self._lifecycle_callback is not None:
            conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                        self._on_lifecycle, None)
        LOG.info("connected to libvirt at %s", self.uri)
        return conn

    @staticmethod
    def _close_quietly(conn):
        try:
            conn.unregisterCloseCallback()
        except libvirt.libvirtError:
            pass
        try:
            conn.close()
        except libvirt.libvirtError:
            pass

    def _on_close(self, _conn, reason, _opaque):
        # Event thread: only log; get_connection() notices via isAlive().
        LOG.warning("libvirt connection to %s closed (reason %s)", self.uri, reason)

    def _on_lifecycle(self, _conn, dom, event, _detail, _opaque):
        try:
            self._lifecycle_callback(dom.UUIDString(), LIFECYCLE_EVENTS.get(event, "unknown"))
        except Exception:  # an exception must not reach libvirt's C loop
            LOG.exception("lifecycle callback failed")

    # -- small helpers the driver uses -------------------------------------

    def lookup_domain(self, uuid):
        """The domain with this UUID, or None."""
        try:
            return self.get_connection().lookupByUUIDString(uuid)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise

    def list_domains(self):
        return self.get_connection().listAllDomains(0)

    @staticmethod
    def domain_metadata(dom, namespace):
        """The metadata element of ``namespace`` as XML text, or None."""
        try:
            return dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, namespace, 0)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() in (libvirt.VIR_ERR_NO_DOMAIN_METADATA,
                                        libvirt.VIR_ERR_NO_DOMAIN):
                return None
            raise
