"""``[api] workers`` > 1: one listening socket, N forked processes serving it.

The parent binds the socket, then forks the workers; before forking it
starts no thread and opens no database or broker connection (a child
inherits no thread, and a connection shared by two processes is corrupt).
Each worker builds its own app (engine, broker connections, token cache,
revocation listener, waitress threads) after the fork and accepts from the
shared socket. The parent only supervises: it restarts a worker that dies
(at most once a second per worker, so that one failing at start-up does not
spin) and on SIGTERM/SIGINT stops them all and reaps them before it exits.
Workers are also sent SIGTERM by the kernel should the parent itself die.
"""
import ctypes
import ctypes.util
import logging
import os
import signal
import socket
import time

LOG = logging.getLogger(__name__)

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
WATCHED = STOP_SIGNALS | {signal.SIGCHLD}
RESTART_INTERVAL = 1.0  # seconds between two starts of one worker slot
STOP_TIMEOUT = 15.0     # seconds workers have after SIGTERM before SIGKILL
PR_SET_PDEATHSIG = 1


def bind_socket(host, port, backlog):
    """The API's listening socket, bound once in the parent."""
    family, kind, proto, _, addr = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(addr)
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


def _die_with_parent(parent):
    """SIGTERM this process when the parent dies (Linux); if it already
    has, exit now."""
    try:
        ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True).prctl(
            PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError, TypeError):
        pass
    if os.getppid() != parent:
        os._exit(1)


class Workers:
    """Runs ``serve(slot)`` in ``count`` child processes; ``serve`` must not
    return while the worker serves."""

    def __init__(self, count, serve):
        self.count, self.serve = count, serve
        self.pids = {}        # pid -> slot
        self.started = {}     # slot -> monotonic time of its last start

    def run(self):
        """Block until SIGTERM/SIGINT; every worker is reaped on return."""
        signal.pthread_sigmask(signal.SIG_BLOCK, WATCHED)
        try:
            for slot in range(self.count):
                self._spawn(slot)
            self._supervise()
        finally:
            self._stop_all()
            signal.pthread_sigmask(signal.SIG_UNBLOCK, WATCHED)

    def _spawn(self, slot):
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the worker: never returns into the parent's code
            code = 1
            try:
                _die_with_parent(parent)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, WATCHED)
                self.serve(slot)
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
            except BaseException:
                LOG.exception("API worker %d failed", slot)
            finally:
                for handler in logging.getLogger().handlers:
                    handler.flush()
                os._exit(code)
        self.pids[pid] = slot
        self.started[slot] = time.monotonic()
        LOG.info("API worker %d started: pid %d", slot, pid)

    def _reap(self, level=logging.WARNING):
        """Slots of the workers that exited (no zombie is left)."""
        dead = []
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return dead
            if pid == 0:
                return dead
            slot = self.pids.pop(pid, None)
            if slot is not None:
                LOG.log(level, "API worker %d (pid %d) exited with status %d", slot, pid,
                        os.waitstatus_to_exitcode(status))
                dead.append(slot)

    def _supervise(self):
        pending = []  # slots to start again
        while True:
            now = time.monotonic()
            for slot in [s for s in pending if now - self.started[s] >= RESTART_INTERVAL]:
                pending.remove(slot)
                self._spawn(slot)
            timeout = 1.0
            if pending:
                timeout = max(0.01, min(RESTART_INTERVAL - (now - self.started[s])
                                        for s in pending))
            info = signal.sigtimedwait(WATCHED, timeout)
            if info is not None and info.si_signo in STOP_SIGNALS:
                LOG.info("stopping %d API workers", len(self.pids))
                return
            pending.extend(self._reap())

    def _stop_all(self):
        for pid in self.pids:
            _kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while self.pids and time.monotonic() < deadline:
            self._reap(logging.INFO)
            if self.pids:
                signal.sigtimedwait({signal.SIGCHLD}, 0.1)
        for pid in list(self.pids):
            LOG.warning("API worker pid %d did not stop in %.0f s: killed", pid, STOP_TIMEOUT)
            _kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            del self.pids[pid]


def _kill(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
