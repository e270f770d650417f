"""The API on its real server (waitress, started by mininova-api) keeps
answering while clients hold connections open doing nothing, dribble their
requests, read nothing of their responses or send bodies that never end.

"Answers" means within 1 s, the bound an acceptance run from outside set:
these tests check that nothing waits for a connection slot or a worker
thread, not how fast a request is. The idle connections are more than that
run's 500, and more than the 1023 descriptors select() can watch.
"""
import resource
import select
import socket
import threading
import time

import pytest
import requests

from mininova_lab.stack import Stack
from mininova_lab.waiting import wait_for

pytestmark = pytest.mark.real_services("rabbitmq", "postgresql", "http")

IDLE = 1100
CONNECTION_LIMIT = 1200
HEADER_TIMEOUT = 3
BODY_TIMEOUT = 3
BODY_MIN_RATE = 1000
IMAGE_MB = 32


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """A stack without compute (the API and a scheduler), with room for
    IDLE connections and short client deadlines, an admin token, and an image big enough that a client not
    reading it leaves most of it unsent."""
    _fit_fd_limit(IDLE + 200)
    stack = Stack(tmp_path_factory.mktemp("api"), extra_conf=(
        "\n[api]\nconnection_limit = %d\nclient_header_timeout = %d\n"
        "client_body_timeout = %d\nclient_body_min_rate = %d\n"
        % (CONNECTION_LIMIT, HEADER_TIMEOUT, BODY_TIMEOUT, BODY_MIN_RATE)))
    stack.start(compute=False)
    path = stack.workdir + "/big.qcow2"
    with open(path, "wb") as f:
        f.write(b"QFI\xfb")
        f.truncate(IMAGE_MB << 20)
    stack.big_image = stack.add_image("big", path)["id"]
    try:
        yield stack
    finally:
        stack.stop()


def _fit_fd_limit(needed):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.fail("these tests open %d sockets; the hard limit on open files "
                        "(ulimit -Hn) is %d" % (needed, hard))
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def _connect(stack):
    return socket.create_connection(("127.0.0.1", stack.port), timeout=10)


def _timed_get(stack, path, session=None):
    """GET on a new connection (or ``session``'s): (response, seconds)."""
    headers = {"X-Auth-Token": stack.http.headers["X-Auth-Token"]}
    start = time.monotonic()
    r = (session or requests).get(stack.url + path, headers=headers, timeout=10)
    return r, time.monotonic() - start


def _answers_promptly(stack, rounds=10):
    """Fresh connections and a kept-alive one each get answers in < 1 s
    (after a first answer, which may wait for the server to accept the
    connections opened just before: they are ahead of it in the backlog)."""
    r, _ = _timed_get(stack, "/v1")
    assert r.status_code == 200, r.text
    timings = []
    with requests.Session() as kept:
        for _ in range(rounds):
            for path, session in (("/v1", None), ("/v1/vms", None), ("/v1/flavors", kept)):
                r, took = _timed_get(stack, path, session)
                assert r.status_code == 200, (path, r.status_code, r.text)
                timings.append((path, round(took, 3)))
    slow = [t for t in timings if t[1] >= 1.0]
    assert not slow, "answers that took 1 s or more: %s (all: %s)" % (slow, timings)


def test_idle_dribbling_and_unread_clients_do_not_block_the_api(api):
    held = []
    stop = threading.Event()
    try:
        # Connections that never send a byte.
        held += [_connect(api) for _ in range(IDLE)]
        # Clients that send a request a byte at a time and never finish it.
        dribblers = [_connect(api) for _ in range(5)]
        held += dribblers

        def dribble():
            line = b"GET /v1 HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: y\r\n" * 1000
            for i in range(len(line)):
                for s in dribblers:
                    try:
                        s.send(line[i:i + 1])
                    except OSError:
                        pass  # closed by the server: its deadline, not our business here
                if stop.wait(0.2):
                    return
        threading.Thread(target=dribble, daemon=True).start()
        # More clients than the API has worker threads, each asking for an
        # image file and reading none of it.
        token = api.http.headers["X-Auth-Token"]
        for _ in range(api_threads() + 4):
            s = _connect(api)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(b"GET /v1/images/%s/file HTTP/1.1\r\nHost: x\r\nX-Auth-Token: %s\r\n\r\n"
                      % (api.big_image.encode(), token.encode()))
            held.append(s)
        _answers_promptly(api)
        # The held connections are still open: served, not dropped.
        assert not _closed(held[0]) and not _closed(held[IDLE - 1])
    finally:
        stop.set()
        for s in held:
            s.close()


def api_threads():
    return 16  # [api] threads' default, which the stack keeps


def _closed(sock):
    """True once the server has closed ``sock`` (EOF or reset); reads and
    drops anything it sent."""
    while _readable(sock):
        try:
            if not sock.recv(65536):
                return True
        except OSError:
            return True
    return False


def _readable(sock):
    poller = select.poll()  # select() cannot watch descriptors past 1023
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


def test_a_client_dribbling_headers_is_disconnected(api):
    s = _connect(api)
    try:
        s.sendall(b"GET /v1 HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()

        def closed_while_dribbling():
            try:
                s.send(b"X")  # one byte of a header that never ends
            except OSError:
                return True
            return _closed(s)
        wait_for(closed_while_dribbling, HEADER_TIMEOUT + 30, interval=0.2,
                 what="the API to close a connection whose headers never end")
        assert time.monotonic() - started >= HEADER_TIMEOUT - 0.5
        _answers_promptly(api, rounds=1)
    finally:
        s.close()


def test_a_client_dribbling_a_body_is_disconnected(api):
    s = _connect(api)
    try:
        s.sendall(b"POST /v1/vms HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 100000\r\n\r\n{")
        # BODY_TIMEOUT plus 1 s per BODY_MIN_RATE bytes: a byte per 0.2 s
        # falls behind at once.
        def closed_while_dribbling():
            try:
                s.send(b" ")
            except OSError:
                return True
            return _closed(s)
        wait_for(closed_while_dribbling, BODY_TIMEOUT + 30, interval=0.2,
                 what="the API to close a connection whose body trickles")
    finally:
        s.close()


def _send_until_answered(sock, chunk, most):
    """Send ``chunk`` after ``chunk`` until the server answers or closes, or
    ``most`` bytes went; (bytes sent, what it answered)."""
    sent = 0
    while sent < most:
        if _readable(sock):
            break
        try:
            sock.sendall(chunk)
        except OSError:
            break
        sent += len(chunk)
    answer = b""
    try:
        sock.settimeout(10)
        while b"\r\n\r\n" not in answer:
            data = sock.recv(4096)
            if not data:
                break
            answer += data
    except OSError:
        pass
    return sent, answer


def test_bodies_that_never_end_or_are_too_large_are_refused(api):
    token = api.http.headers["X-Auth-Token"].encode()
    head = (b"POST /v1/vms HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"X-Auth-Token: " + token + b"\r\n")
    # A chunked body that never ends: refused past [api] max_body_bytes
    # (1 MiB), the connection closed. The client gets that far ahead of the
    # server only by the sockets' buffers (here up to tcp_rmem + tcp_wmem).
    most = 128 << 20
    with _connect(api) as s:
        s.sendall(head + b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b"10000\r\n" + b" " * 0x10000 + b"\r\n"
        sent, answer = _send_until_answered(s, chunk, most)
        assert sent < most, "the API took all %d MiB of a body that never ends" % (sent >> 20)
        # (A reset may overtake the answer: the client was still sending.)
        assert answer.startswith(b"HTTP/1.1 413") or not answer, answer[:200]
    # A declared length too large: refused before any of the body is sent.
    with _connect(api) as s:
        s.sendall(head + b"Content-Length: %d\r\n\r\n" % (100 << 20))
        s.settimeout(10)
        assert s.recv(4096).startswith(b"HTTP/1.1 413")
    # The server's 413 is the API's own JSON error.
    r = api.http.post(api.url + "/v1/vms", data=b"{" + b" " * (1536 << 10) + b"}",
                      headers={"Content-Type": "application/json"}, timeout=10)
    assert r.status_code == 413 and r.headers["Content-Type"] == "application/json"
    assert r.json()["error"]["message"] == (
        "Request body too large (limit %d bytes)." % (1 << 20)), r.text
    # An image upload may be larger ([api] max_image_bytes).
    image = b"QFI\xfb" + bytes(3 << 20)
    r = api.http.post(api.url + "/v1/images?name=uploaded", data=image, timeout=30,
                      headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201 and r.json()["image"]["size"] == len(image), r.text
    _answers_promptly(api, rounds=1)
