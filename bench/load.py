"""A small HTTP load generator on loopback: keep-alive connections from
threads (http.client, far lighter than requests), closed loop, per-request
latency. Python threads are enough at the rates the API reaches; the client's
own cost per request is a few tens of microseconds."""
import http.client
import json
import threading
import time
import urllib.parse


class Client:
    """One keep-alive connection (one per thread)."""

    def __init__(self, url, token, timeout=60):
        parts = urllib.parse.urlsplit(url)
        self.host, self.port = parts.hostname, parts.port
        self.headers = {"X-Auth-Token": token, "Content-Type": "application/json"}
        self.timeout = timeout
        self.conn = None

    def request(self, method, path, body=None):
        """(status, parsed JSON or None, headers); reconnects once on a
        connection the server closed."""
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
            if resp.getheader("Connection", "").lower() == "close":
                self.conn.close()
                self.conn = None
            parsed = json.loads(raw) if raw and raw[:1] in (b"{", b"[") else None
            return resp.status, parsed, dict(resp.getheaders())
        raise AssertionError("unreachable")

    def timed(self, method, path, body=None):
        t = time.perf_counter()
        status, parsed, headers = self.request(method, path, body)
        return time.perf_counter() - t, status, parsed, headers

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
