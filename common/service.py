"""Running a daemon: RPC servers, periodic tasks, clean stop on SIGTERM/SIGINT."""
import ctypes
import ctypes.util
import gc
import logging
import signal
import threading

from common import context
from common import exception

LOG = logging.getLogger(__name__)

# Young-generation collections after this many net allocations (CPython's
# default is 700). A long list request allocates tens of thousands of
# short-lived objects, almost all freed by reference counting; with the
# default they would set off a full collection every few requests, which
# stalls every thread of the daemon.
GC_GEN0_THRESHOLD = 50000


# glibc's mallopt parameters: the number of malloc arenas, and the size from
# which a block gets its own mapping.
M_ARENA_MAX = -8
M_MMAP_THRESHOLD = -3
MALLOC_ARENAS = 2


def _libc():
    return ctypes.CDLL(ctypes.util.find_library("c"))


def tune_malloc(arenas=MALLOC_ARENAS, mmap_threshold=None):
    """Call first in a daemon's main, before it starts threads: glibc gives
    each new thread its own malloc arena (up to 8 per CPU), and memory freed
    in one is not reused by the others, so a thread pool's daemon keeps the
    peak of every thread's allocations resident. A few shared arenas keep
    its RSS near what it uses; the GIL serializes allocation anyway.

    ``mmap_threshold`` (bytes): blocks from that size get a mapping of their
    own, returned to the system when freed. Left alone, glibc raises its
    threshold to the largest block freed so far (up to 32 MB), after which
    big transient blocks (a long list's JSON) are carved from the heap and
    leave it fragmented. Not on glibc: nothing."""
    try:
        libc = _libc()
        done = bool(libc.mallopt(M_ARENA_MAX, arenas))
        if mmap_threshold is not None:
            done = bool(libc.mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and done
        return done
    except (OSError, AttributeError, TypeError):
        return False


def tune_gc():
    """Call once the daemon has started: the objects of the start-up
    (modules, config, app) go to a permanent generation no collection
    scans again, and young collections run less often."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


class PeriodicTask:
    """Calls ``fn(ctxt)`` every ``interval`` seconds in its own thread; the
    first call happens after ``delay`` (default at once: e.g. a compute host
    reports in at start)."""

    def __init__(self, name, fn, interval, delay=0):
        self.name, self.fn, self.interval, self.delay = name, fn, interval, delay
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self):
        """Idempotent: a task started early (compute's heartbeat, before its
        start-up work) is not started again by Service.start."""
        if self._thread.ident is None:
            self._thread.start()

    def _run(self):
        if self.delay:
            self._stop.wait(self.delay)
        while not self._stop.is_set():
            ctxt = context.get_admin_context()
            token = context.set_current(ctxt)
            try:
                self.fn(ctxt)
            except exception.ServiceUnavailable as e:  # the next run tries again
                LOG.warning("periodic task %s: %s", self.name, e.message)
            except Exception:
                LOG.exception("periodic task %s failed", self.name)
            finally:
                context.reset_current(token)
            self._stop.wait(self.interval)

    def stop(self):
        self._stop.set()


class Service:
    def __init__(self, name, servers=(), tasks=(), on_stop=None):
        self.name = name
        self.servers = list(servers)
        self.tasks = list(tasks)
        self.on_stop = on_stop
        self._stopped = threading.Event()

    def start(self):
        for server in self.servers:
            server.start()
        for task in self.tasks:
            task.start()
        LOG.info("%s started", self.name)

    def stop(self, *_args):
        self._stopped.set()

    def run(self):
        """Start, then block until SIGTERM or SIGINT; stop cleanly."""
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        self.start()
        self._stopped.wait()
        LOG.info("%s stopping", self.name)
        for task in self.tasks:
            task.stop()
        for server in self.servers:
            server.stop()
        for server in self.servers:
            server.wait()
        if self.on_stop:
            self.on_stop()
        LOG.info("%s stopped", self.name)
