"""Two API processes behind HAProxy (deploy/haproxy-cfg.sh), real RabbitMQ,
PostgreSQL and HTTP, fake computes: `kill -9` of one API under a steady load
of GET /v1/vms and POST /v1/vms with X-Idempotency-Key, each retried by the
client with the same key when it fails. Only requests sent before HAProxy
marked the dead API down may fail; none after; every key made one VM."""
import itertools
import threading
import time

import pytest
import requests

from mininova_lab.sim_compute import fake_stack
from mininova_lab.stack import Stack
from mininova_lab.waiting import wait_for

pytestmark = pytest.mark.real_services("rabbitmq", "postgresql", "http")

PACE = 0.02         # seconds between two requests of one client thread: a steady load
RETRIES = 5         # attempts per request before the test calls it lost
FAILED = (502, 503, 504)


class Load:
    """Client threads; every attempt recorded as (started, ended, what)."""

    def __init__(self, stack, token):
        self.url, self.token = stack.url, token
        self.attempts = []   # (started, ended, kind, outcome): outcome "ok" or the failure
        self.creates = {}    # key -> [vm ids answered]
        self.lost = []       # requests that failed RETRIES times
        self.retried = []    # keys of creates sent more than once
        self.unexpected = []  # answers other than success or a gateway error
        self.stop = threading.Event()
        self._names = itertools.count()
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(kind,), daemon=True)
                        for kind in ("list", "list") + ("create",) * 6]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def done(self, after=0.0):
        with self._lock:
            return sum(1 for a in self.attempts if a[0] >= after and a[3] == "ok")

    def _attempt(self, session, kind, key):
        started = time.monotonic()
        try:
            if kind == "list":
                r = session.get(self.url + "/v1/vms?limit=5", timeout=30)
            else:
                r = session.post(self.url + "/v1/vms", timeout=30,
                                 headers={"X-Idempotency-Key": key},
                                 json={"name": key, "image": "tiny", "flavor": "m1.tiny"})
            outcome = "ok" if r.status_code in (200, 202) else "HTTP %d" % r.status_code
            vm = r.json()["vm"]["id"] if kind == "create" and outcome == "ok" else None
        except requests.RequestException as e:
            outcome, vm = type(e).__name__, None
        with self._lock:
            self.attempts.append((started, time.monotonic(), kind, outcome))
            if vm is not None:
                self.creates.setdefault(key, []).append(vm)
        if outcome == "ok":
            return True
        if outcome.startswith("HTTP") and outcome not in ["HTTP %d" % c for c in FAILED]:
            self.unexpected.append((kind, key, outcome))  # a refusal: retrying will not help
            return True
        return False  # the connection failed or HAProxy found no API: retry

    def _run(self, kind):
        session = requests.Session()
        session.headers["X-Auth-Token"] = self.token
        while not self.stop.is_set():
            key = "ha-%d" % next(self._names)
            for attempt in range(RETRIES):  # the same key each time: retry-safe
                if self._attempt(session, kind, key):
                    if attempt and kind == "create":
                        self.retried.append(key)
                    break
            else:
                self.lost.append((kind, key))
            self.stop.wait(PACE)


@pytest.fixture
def stack(tmp_path):
    with fake_stack(tmp_path, apis=2) as s:
        yield s


def test_kill_one_api_behind_haproxy_under_load(stack):
    for url in stack.api_urls.values():
        r = requests.get(url + "/healthcheck", timeout=10)
        assert (r.status_code, r.text) == (200, "OK")
    assert set(stack.haproxy.states().values()) == {"UP"}
    load = Load(stack, stack.http.headers["X-Auth-Token"]).start()
    try:
        wait_for(lambda: load.done() >= 40, 60, what="40 requests through HAProxy")
        killed_at = time.monotonic()
        stack.procs["api2"].kill()  # SIGKILL: no goodbye
        wait_for(lambda: stack.haproxy.states().get("api2", "").startswith("DOWN"), 30,
                 interval=0.01, what="HAProxy to mark api2 down")
        down_at = time.monotonic()
        wait_for(lambda: load.done(after=down_at) >= 60, 60,
                 what="60 requests after api2 was marked down")
    finally:
        load.stop.set()
        for t in load.threads:
            t.join(60)
    failed = [a for a in load.attempts if a[3] != "ok"]
    print("\nHAProxy marked api2 DOWN %.3f s after the kill; %d attempts, %d failed (%s); "
          "last failed attempt started %.3f s after the kill; %d creates, %d of them retried "
          "(same key, one VM each)"
          % (down_at - killed_at, len(load.attempts), len(failed),
             sorted({a[3] for a in failed}),
             max((a[0] for a in failed), default=killed_at) - killed_at,
             len(load.creates), len(load.retried)))
    assert load.lost == [] and load.unexpected == []
    # Failures only among requests sent before HAProxy noticed.
    assert [a for a in failed if a[0] >= down_at] == []
    # Every key made one VM, whatever the retries; no other VM exists.
    assert all(len(set(ids)) == 1 for ids in load.creates.values()), load.creates
    vms = {vm["id"] for vm in stack.get("/v1/vms?limit=1000").json()["vms"]}
    assert vms == {ids[0] for ids in load.creates.values()}
    assert stack.haproxy.states()["api"] == "UP"


def test_lab_script_brings_apis_and_haproxy_up_and_down(tmp_path):
    """deploy/lab/ha-apis.sh: 3 APIs behind HAProxy on a stack's database and
    vhost; one killed is DOWN in HAProxy's eyes while requests still pass;
    down stops every process it started and removes its directory."""
    import subprocess
    import os
    script = os.path.join(os.path.dirname(__file__), "..", "..", "deploy", "lab", "ha-apis.sh")
    stack = Stack(tmp_path / "stack", compute_driver="fake", network="", debug=False)
    lab = tmp_path / "ha"
    try:
        stack.configure()
        out = subprocess.run(["bash", script, "up", str(lab), stack.conf_path, "3"],
                             check=True, capture_output=True, text=True, timeout=120).stdout
        facts = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        url, pids = facts["HA_URL"], facts["HA_API_PIDS"].strip('"').split()
        assert len(pids) == 3
        token = stack.http.headers["X-Auth-Token"]

        def status():
            return subprocess.run(["bash", script, "status", str(lab)], check=True,
                                  capture_output=True, text=True, timeout=30).stdout.split()
        assert status() == ["api1", "UP", "api2", "UP", "api3", "UP"]
        killed_at = time.monotonic()
        subprocess.run(["bash", script, "kill", str(lab), "2"], check=True, timeout=30)
        # No traffic meanwhile: the health checks alone notice (inter 1s, fall 2).
        wait_for(lambda: status()[3] == "DOWN", 30, interval=0.02, what="api2 DOWN")
        print("\nno traffic: HAProxy's health checks marked api2 DOWN %.2f s after the kill"
              % (time.monotonic() - killed_at))
        for _ in range(6):  # round robin over the two left
            r = requests.get(url + "/v1/vms", headers={"X-Auth-Token": token}, timeout=10)
            assert r.status_code == 200
        assert requests.get(url + "/healthcheck", timeout=10).text == "OK"
    finally:
        subprocess.run(["bash", script, "down", str(lab)], timeout=60)
        stack.stop()
    assert not lab.exists()
    for pid in pids:
        assert not os.path.exists("/proc/%s" % pid) or open(
            "/proc/%s/stat" % pid).read().split()[2] == "Z"
