"""GET/HEAD /healthcheck: 200 OK or 503 naming what is unreachable, cached,
bounded in time, without a token."""
import socket
import threading
import time

import pytest

from nova_api import healthcheck
from nova_api.app import create_app


class Ok(healthcheck.Probe):
    name = "database"

    def __init__(self):
        self.checks = 0

    def check(self):
        self.checks += 1


class Down(Ok):
    name = "message broker"

    def check(self):
        super().check()
        raise ConnectionRefusedError("[Errno 111] Connection refused to 10.0.0.5 as admin")


class Hangs(Ok):
    """Does not answer until released (a peer that swallows packets)."""
    name = "database"

    def __init__(self):
        super().__init__()
        self.release = threading.Event()

    def check(self):
        super().check()
        self.release.wait(30)


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


@pytest.fixture
def client(conf, db, recorder):
    def make(health):
        return create_app(conf, db, recorder(), recorder(), health=health).test_client()
    return make


def test_ok_without_a_token(client):
    probes = [Ok(), Ok()]
    api = client(healthcheck.HealthCheck(probes))
    r = api.get("/healthcheck")
    assert (r.status_code, r.get_data(as_text=True)) == (200, "OK")
    assert r.content_type.startswith("text/plain")
    r = api.head("/healthcheck")
    assert r.status_code == 200 and r.get_data() == b""
    assert all(p.checks >= 1 for p in probes)


def test_503_names_what_is_unreachable_and_leaks_no_detail(client):
    api = client(healthcheck.HealthCheck([Ok(), Down()], cache_seconds=0))
    r = api.get("/healthcheck")
    assert r.status_code == 503
    text = r.get_data(as_text=True)
    assert text == "message broker unreachable (ConnectionRefusedError)"
    assert "10.0.0.5" not in text and "admin" not in text
    assert api.head("/healthcheck").status_code == 503


def test_both_down_named(client):
    class DbDown(Down):
        name = "database"
    r = client(healthcheck.HealthCheck([DbDown(), Down()])).get("/healthcheck")
    assert r.status_code == 503
    assert r.get_data(as_text=True) == ("database unreachable (ConnectionRefusedError); "
                                        "message broker unreachable (ConnectionRefusedError)")


def test_the_verdict_is_cached():
    clock, probe = Clock(), Ok()
    health = healthcheck.HealthCheck([probe], cache_seconds=1.0, clock=clock)
    for _ in range(50):
        assert health.reasons() == []
    assert probe.checks == 1
    clock.now += 1.0
    assert health.reasons() == [] and probe.checks == 2


def test_a_hanging_probe_is_given_its_timeout_and_not_run_twice():
    hangs = Hangs()
    health = healthcheck.HealthCheck([hangs, Ok()], cache_seconds=0, timeout=0.2)
    try:
        started = time.monotonic()
        assert health.reasons() == ["database unreachable: no answer within 0.2 s"]
        first = time.monotonic() - started
        # The check still hangs: the next poll does not wait for it again
        # nor start a second one.
        started = time.monotonic()
        assert health.reasons() == ["database unreachable: no answer within 0.2 s"]
        assert time.monotonic() - started < first + 5  # bounded (no speed assert)
        assert hangs.checks == 1
    finally:
        hangs.release.set()
    # Once it answers, the next poll probes again and finds it healthy.
    deadline = time.monotonic() + 30
    while health.reasons() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert health.reasons() == [] and hangs.checks >= 2


def test_disable_file_drains(tmp_path, client):
    flag = tmp_path / "drain"
    api = client(healthcheck.HealthCheck([Ok()], disable_file=str(flag)))
    assert api.get("/healthcheck").status_code == 200
    flag.write_text("")
    r = api.get("/healthcheck")
    assert (r.status_code, r.get_data(as_text=True)) == (503, "disabled by file")
    flag.unlink()
    assert api.get("/healthcheck").status_code == 200


def test_database_probe_on_sqlite(tmp_path):
    good = healthcheck.DatabaseProbe("sqlite:///" + str(tmp_path / "x.sqlite"))
    good.check()
    good.close()
    bad = healthcheck.DatabaseProbe("sqlite:///" + str(tmp_path / "missing" / "x.sqlite"))
    with pytest.raises(Exception):
        bad.check()


def _closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_broker_probe_refused_and_silent():
    """A port nobody listens on fails at once; one that accepts and never
    speaks AMQP fails within the probe's timeout instead of hanging."""
    refused = healthcheck.BrokerProbe("rabbit://u:p@127.0.0.1:%d/" % _closed_port(),
                                      timeout=0.5)
    with pytest.raises(Exception):
        refused.check()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(5)
    try:
        probe = healthcheck.BrokerProbe("rabbit://u:p@127.0.0.1:%d/"
                                        % silent.getsockname()[1], timeout=0.5)
        health = healthcheck.HealthCheck([probe], timeout=1.0)
        reasons = health.reasons()
        assert len(reasons) == 1 and reasons[0].startswith("message broker unreachable")
        health.close()
    finally:
        silent.close()


def test_broker_probe_takes_any_broker_of_a_failover_list():
    a, b = _closed_port(), _closed_port()
    probe = healthcheck.BrokerProbe("rabbit://u:p@127.0.0.1:%d,u:p@127.0.0.1:%d/v" % (a, b),
                                    timeout=0.5)
    assert len(probe.urls) == 2
    with pytest.raises(Exception):
        probe.check()  # both refused: the last error
