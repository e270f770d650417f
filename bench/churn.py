"""A background load of VM state changes, made the way they happen in life.

A compute host that sees a domain stop or start reports it to the conductor
(``ConductorRPCAPI.instance_power_sync``, an RPC call over RabbitMQ, as
nova_compute/reconciler.py does after a libvirt event); the conductor daemon adopts
it with a conditional UPDATE of vm_state, power_state and updated_at. Churn
plays such a host for VM rows that name it: every change turns an ACTIVE VM
SHUTOFF or back, through the real broker, conductor and DB paths, so any
cache of the API keyed on a row misses for that row exactly as it would.

It runs in a process of its own: in the bench's process its RPC work would
hold the GIL while a timed request's answer arrives, and add to that time.

Pacing is open loop: change k is due ``k / per_second`` after the start,
whatever the earlier ones cost; a change that comes late is sent at once,
and ``stats()`` tells how far the achieved rate fell short of the target.
"""
import multiprocessing
import random
import time

from common import exception

_CTX = multiprocessing.get_context("spawn")   # no fork of the bench's threads


class Churn:
    def __init__(self, transport_url, host, ids, per_second, rpc_timeout=10):
        """``ids``: VMs whose row names ``host`` and rests ACTIVE/running;
        they change in a shuffled round robin, so ``per_second`` distinct
        VMs change each second while ``per_second <= len(ids)``."""
        if per_second <= 0 or not ids:
            raise ValueError("churn needs VMs and a positive rate")
        self._args = (transport_url, host, list(ids), float(per_second), rpc_timeout)
        self._applied = _CTX.Value("q", 0, lock=False)   # one writer: the child
        self._ready = _CTX.Event()
        self._stop = _CTX.Event()
        self._parent, self._child = _CTX.Pipe(duplex=False)
        self._proc = None
        self._stats = None

    def start(self, timeout=60):
        self._proc = _CTX.Process(target=_main, name="bench-churn", daemon=True, args=(
            self._args, self._applied, self._ready, self._stop, self._child))
        self._proc.start()
        if not self._ready.wait(timeout):
            self._proc.kill()
            raise RuntimeError("the churn process did not start in %d s" % timeout)
        if self._parent.poll():   # it reported before it began: it could not
            self._stats = self._parent.recv()
            raise RuntimeError("the churn process failed: %s" % self._stats.get("error"))
        return self

    def count(self):
        """(monotonic now, changes applied so far): the rate over a window
        is the difference of two counts (CLOCK_MONOTONIC is system-wide)."""
        return time.monotonic(), self._applied.value

    def stop(self, timeout=60):
        if self._stats is None and self._proc is not None:
            self._stop.set()
            if not self._parent.poll(timeout):
                self._proc.kill()
                raise RuntimeError("the churn process did not report in %d s" % timeout)
            self._stats = self._parent.recv()
            self._proc.join(timeout)
        return self._stats

    def stats(self):
        return self.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _main(args, applied, ready, stop, conn):
    try:
        worker = _Worker(*args, applied=applied)
    except Exception as exc:
        conn.send({"error": exception.describe(exc)})
        ready.set()
        return
    ready.set()
    try:
        worker.run(stop)
    finally:
        conn.send(worker.stats())
        worker.transport.cleanup()


class _Worker:
    """The changes themselves, in the churn process."""

    def __init__(self, transport_url, host, ids, per_second, rpc_timeout, applied):
        from common import rpc, states   # imported in the child only
        from nova_conductor.rpcapi import ConductorRPCAPI
        self.states = states
        self.host = host
        self.ids = list(ids)
        random.shuffle(self.ids)
        self.per_second = per_second
        self.power = dict.fromkeys(self.ids, states.RUNNING)  # what each "domain" is now
        self.transport = rpc.get_transport(transport_url)
        self.conductor = ConductorRPCAPI(self.transport, timeout=rpc_timeout)
        self.applied = applied   # the conductor wrote the change (shared counter)
        self.refused = 0         # the conductor found nothing to change (must stay 0)
        self.errors = 0
        self.error_reasons = []
        self.late = 0            # sent more than one interval after they were due
        self.call_seconds = []
        self.started = self.ended = None
        self.cpu0 = self.cpu1 = None

    def run(self, stop):
        from common import context
        ctxt = context.get_admin_context()
        running, shutdown = self.states.RUNNING, self.states.SHUTDOWN
        interval = 1.0 / self.per_second
        self.started, self.cpu0 = time.monotonic(), time.process_time()
        k = 0
        while not stop.is_set():
            wait = self.started + k * interval - time.monotonic()
            if wait > 0:
                if stop.wait(wait):
                    break
            elif -wait > interval:
                self.late += 1
            vm_id = self.ids[k % len(self.ids)]
            new = shutdown if self.power[vm_id] == running else running
            t = time.perf_counter()
            try:
                done = self.conductor.instance_power_sync(ctxt, vm_id, self.host, new)
            except Exception as exc:  # counted: the figure says how much churn there was
                self.errors += 1
                if len(self.error_reasons) < 5:
                    self.error_reasons.append(exception.describe(exc))
            else:
                self.call_seconds.append(time.perf_counter() - t)
                if done:
                    self.applied.value += 1
                    self.power[vm_id] = new
                else:
                    self.refused += 1
            k += 1
        self.ended, self.cpu1 = time.monotonic(), time.process_time()

    def stats(self):
        elapsed = (self.ended or time.monotonic()) - self.started if self.started else 0.0
        applied = self.applied.value
        calls = sorted(self.call_seconds)
        return {
            "how": "instance_power_sync RPC calls to the conductor daemon as host %r "
                   "(ACTIVE <-> SHUTOFF), from a process of their own" % self.host,
            "vms": len(self.ids),
            "target_per_s": self.per_second,
            "achieved_per_s": round(applied / elapsed, 1) if elapsed else 0.0,
            "seconds": round(elapsed, 2),
            "applied": applied, "refused": self.refused, "errors": self.errors,
            "error_reasons": self.error_reasons, "late": self.late,
            "call_p50_ms": round(calls[len(calls) // 2] * 1000.0, 1) if calls else None,
            # the load generator's own CPU (it shares the host's cores)
            "own_cpu_ms_per_change": round((self.cpu1 - self.cpu0) * 1000.0 / applied, 2)
            if applied and self.cpu1 is not None else None,
            "stopped_now": sum(1 for p in self.power.values() if p != self.states.RUNNING),
        }
