"""A small HTTP load generator on loopback: keep-alive connections from
threads (http.client, far lighter than requests), closed loop, per-request
latency. Python threads are enough at the rates the API reaches; the client's
own cost per request is a few tens of microseconds."""
import http.client
import json
import threading
import time
import urllib.parse

from common import exception


def percentile(values, p):
    """The nearest-rank ``p``th percentile of ``values`` (None if empty)."""
    values = sorted(values)
    if not values:
        return None
    k = min(len(values) - 1, max(0, round(p / 100.0 * (len(values) - 1))))
    return values[k]


def parse(raw):
    return json.loads(raw) if raw and raw[:1] in (b"{", b"[") else None


class Client:
    """One keep-alive connection (one per thread)."""

    def __init__(self, url, token, timeout=60):
        parts = urllib.parse.urlsplit(url)
        self.host, self.port = parts.hostname, parts.port
        self.headers = {"X-Auth-Token": token, "Content-Type": "application/json"}
        self.timeout = timeout
        self.conn = None

    def exchange(self, method, path, body=None):
        """(status, raw body bytes, headers); reconnects once on a connection
        the server closed."""
        data = json.dumps(body).encode() if body is not None else None
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request(method, path, body=data, headers=self.headers)
                resp = self.conn.getresponse()
                raw = resp.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
                continue
            except (OSError, http.client.HTTPException):
                self.close()  # a timeout or a broken answer: the next request starts afresh
                raise
            if resp.getheader("Connection", "").lower() == "close":
                self.conn.close()
                self.conn = None
            return resp.status, raw, dict(resp.getheaders())
        raise AssertionError("unreachable")

    def request(self, method, path, body=None):
        """(status, parsed JSON or None, headers)."""
        status, raw, headers = self.exchange(method, path, body)
        return status, parse(raw), headers

    def timed(self, method, path, body=None):
        """(seconds, status, parsed JSON, headers). The seconds run from
        sending the request to the answer's last byte: decoding the JSON
        afterwards is the client's cost (5 ms for 1000 VMs), not the API's."""
        t = time.perf_counter()
        status, raw, headers = self.exchange(method, path, body)
        seconds = time.perf_counter() - t
        return seconds, status, parse(raw), headers

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def closed_loop(url, token, requests, concurrency, make_request):
    """``requests`` requests from ``concurrency`` threads, each sending its
    next one as soon as the previous answered. ``make_request(i)`` gives
    (method, path, body) of request i. Returns (wall seconds, [(i, seconds,
    status, parsed body)])."""
    lock = threading.Lock()
    next_index = [0]
    results = []
    errors = []
    barrier = threading.Barrier(concurrency + 1)

    def worker():
        client = Client(url, token)
        try:
            client.request("GET", "/v1")  # open the connection before the start
            barrier.wait(timeout=60)
            while True:
                with lock:
                    i = next_index[0]
                    if i >= requests:
                        return
                    next_index[0] += 1
                method, path, body = make_request(i)
                seconds, status, parsed, _ = client.timed(method, path, body)
                with lock:
                    results.append((i, seconds, status, parsed))
        except Exception as exc:
            errors.append(exc)
            barrier.abort()
        finally:
            client.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    try:
        barrier.wait(timeout=60)
    except threading.BrokenBarrierError:
        pass
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise errors[0]
    results.sort(key=lambda r: r[0])
    return wall, results


class Failed(Exception):
    """A request that was answered, but not as it should have been."""


# What a failed request raises: counted by Series, never fatal to a phase.
# ValueError: a body that is not the JSON it should be.
REQUEST_ERRORS = (Failed, OSError, http.client.HTTPException, ValueError)


class Series:
    """The latencies of one kind of request and its failures.

    ``measure(fn)``: ``fn()`` sends one request and returns its seconds, or
    raises one of REQUEST_ERRORS (a wire error, a wrong status, a wrong
    body): then the failure is counted, its first reasons kept, and its time
    is not a sample. A figure with failures never meets its goal
    (bench/report.py), so leaving them out of the percentiles flatters
    nothing."""
    KEEP_REASONS = 5

    def __init__(self, label):
        self.label = label
        self.samples = []
        self.failures = 0
        self.reasons = []
        self.wall = 0.0

    def measure(self, fn):
        t = time.perf_counter()
        try:
            seconds = fn()
        except REQUEST_ERRORS as exc:
            self.failures += 1
            if len(self.reasons) < self.KEEP_REASONS:
                self.reasons.append(exception.describe(exc))
            seconds = None
        else:
            self.samples.append(seconds)
        self.wall += time.perf_counter() - t
        return seconds

    def summary(self):
        """Milliseconds, rounded to 0.1; ``wall_s``: the time spent in
        ``measure`` (requests and their checks), a bound on every sample."""
        def ms(x):
            return None if x is None else round(x * 1000.0, 1)
        s = self.samples
        return {"label": self.label, "n": len(s), "failures": self.failures,
                "failure_reasons": self.reasons,
                "p50_ms": ms(percentile(s, 50)), "p95_ms": ms(percentile(s, 95)),
                "p99_ms": ms(percentile(s, 99)), "max_ms": ms(max(s) if s else None),
                "wall_s": round(self.wall, 3)}
