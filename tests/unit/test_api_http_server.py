"""The API server's bounds (nova_api/http_server.py) and how mininova-api
configures them; the real server under real clients is in
tests/functional/test_api_connections.py."""
import json
import resource

import pytest
from waitress.adjustments import Adjustments

from nova_api import cmd, http_server


class FakeParser:
    def __init__(self, started, body_started=None, body_bytes_received=0):
        self.started, self.body_started = started, body_started
        self.body_bytes_received = body_bytes_received


def limits(header=20, body=20, rate=500, cap=lambda method, path: 100):
    return http_server.RequestLimits(header, body, rate, cap)


def test_headers_are_overdue_after_the_header_timeout_from_the_first_byte():
    assert limits().overdue(FakeParser(started=100.0), now=119.0) is None
    assert "headers" in limits().overdue(FakeParser(started=100.0), now=121.0)


def test_a_body_earns_a_second_per_min_rate_bytes():
    p = FakeParser(started=0.0, body_started=100.0, body_bytes_received=5000)
    assert limits(rate=500).overdue(p, now=129.0) is None       # 20 + 10 s
    assert "body too slow" in limits(rate=500).overdue(p, now=131.0)
    assert limits(rate=0).overdue(p, now=121.0) is not None     # no allowance


def _parser(cap):
    parser_class = http_server._channel_class(limits(cap=lambda method, path: cap))
    return parser_class.parser_class(Adjustments())


def test_a_declared_body_over_the_cap_is_refused_before_it_is_buffered():
    p = _parser(cap=1000)
    head = b"POST /v1/vms HTTP/1.1\r\nContent-Length: 1001\r\n\r\n"
    assert p.received(head) == len(head)
    assert p.completed and p.error.code == 413 and p.body_bytes_received == 0
    status, headers, body = p.error.to_response()
    assert status.startswith("413") and ("Content-Type", "application/json") in headers
    assert json.loads(body) == {"error": {"code": 413, "message":
                                          "Request body too large (limit 1000 bytes)."}}


def test_a_chunked_body_is_cut_off_past_the_cap():
    p = _parser(cap=1024)
    p.received(b"POST /v1/vms HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert not p.completed
    chunk = b"100\r\n" + b"x" * 0x100 + b"\r\n"
    for _ in range(4):  # 1024 bytes, the cap: the chunks' framing does not count
        p.received(chunk)
    assert not p.completed
    p.received(chunk)
    assert p.completed and p.error.code == 413


def test_a_body_within_the_cap_is_received_whole():
    p = _parser(cap=1000)
    p.received(b"POST /v1/vms HTTP/1.1\r\nContent-Length: 1000\r\n\r\n")
    p.received(b"x" * 1000)
    assert p.completed and p.error is None and p.body_started is not None


def test_only_image_uploads_may_send_image_sized_bodies(conf):
    cap = cmd.body_cap(conf.api)
    assert cap("POST", "/v1/images") == cap("POST", "/v1/images/") == conf.api.max_image_bytes
    for method, path in (("POST", "/v1/vms"), ("PUT", "/v1/images"),
                         ("POST", "/v1/images/x/file")):
        assert cap(method, path) == conf.api.max_body_bytes


def test_defaults_hold_the_acceptance_runs_idle_connections(conf):
    # It held 500 idle connections open against an API that took 100.
    assert conf.api.connection_limit >= 500


class Limits:
    def __init__(self, soft, hard):
        self.soft, self.hard, self.set = soft, hard, None

    def get(self, which):
        assert which == resource.RLIMIT_NOFILE
        return self.soft, self.hard

    def setrlimit(self, which, value):
        self.set = value
        self.soft = value[0]


@pytest.mark.parametrize("soft,hard,expect_soft,expect_limit", [
    (1024, 524288, 3 * 1000 + 256, 1000),           # raised to fit
    (1024, 2048, 2048, (2048 - 256) // 3),          # as far as allowed, fewer connections
    (100000, 524288, 100000, 1000),                  # already enough: untouched
    (resource.RLIM_INFINITY, resource.RLIM_INFINITY, resource.RLIM_INFINITY, 1000),
])
def test_fd_limit_is_raised_to_fit_the_connections(soft, hard, expect_soft, expect_limit):
    lim = Limits(soft, hard)
    assert http_server.fit_fd_limit(1000, lim.get, lim.setrlimit) == expect_limit
    assert lim.soft == expect_soft
    assert lim.set is None or lim.set[1] == hard
