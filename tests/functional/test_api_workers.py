"""[api] workers = 2 on the real services: one port, two forked worker
processes answering it, a killed worker replaced by the parent, nothing
left running once the API is stopped."""
import os
import re
import signal

import pytest

from bench.phase_api import child_pids
from mininova_lab.sim_compute import fake_stack
from mininova_lab.waiting import wait_for

pytestmark = pytest.mark.real_services("rabbitmq", "postgresql", "http")


def children(pid):
    """PIDs of ``pid``'s live child processes."""
    return set(child_pids(pid))


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def serving_pids(stack, requests_made):
    """PIDs of the API processes that logged the given requests' ids."""
    with open(os.path.join(stack.logs, "api.log")) as f:
        text = f.read()
    pids = set()
    for request_id in requests_made:
        m = re.search(r"^\S+ \S+ (\d+) INFO \S+ \[%s\]" % re.escape(request_id), text, re.M)
        if m:
            pids.add(int(m.group(1)))
    return pids


@pytest.fixture
def stack(tmp_path):
    with fake_stack(tmp_path, extra_conf="\n[api]\nworkers = 2\n") as s:
        yield s


def test_two_workers_serve_survive_a_kill_and_stop_cleanly(stack):
    parent = stack.procs["api"].pid
    workers = wait_for(lambda: children(parent) if len(children(parent)) == 2 else None, 30,
                       what="2 API workers")

    made = []

    def serve(n):
        ids = []
        for _ in range(n):
            made.append(None)
            r = stack.post("/v1/vms", {"name": "w%d" % len(made), "image": "tiny", "flavor": "m1.tiny"})
            assert r.status_code == 202, r.text
            ids.append(r.headers["X-Request-Id"])
            r = stack.http.get(stack.url + "/v1/vms", timeout=10,
                               headers={"Connection": "close"})  # a new connection: any worker
            assert r.status_code == 200, r.text
            ids.append(r.headers["X-Request-Id"])
        return ids

    ids = serve(20)
    vm = stack.get("/v1/vms").json()["vms"][0]["id"]
    stack.wait_status(vm, "ACTIVE")
    # Both workers answered (each request's id is logged with its pid).
    stack.http.close()
    ids += serve(10)
    wait_for(lambda: serving_pids(stack, ids) == workers, 30,
             what="both workers %s in the log (saw %s)" % (workers, serving_pids(stack, ids)))

    victim = sorted(workers)[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: not alive(victim), 30, what="the killed worker reaped")
    replaced = wait_for(lambda: children(parent) if len(children(parent)) == 2 else None, 30,
                        what="a new worker in place of the killed one")
    assert victim not in replaced and len(replaced & workers) == 1
    stack.http.close()
    ids = serve(10)
    assert len(stack.get("/v1/vms?limit=1000").json()["vms"]) == 40

    stack.stop_daemon("api")  # SIGTERM to the parent, which stops its workers
    assert not alive(parent)
    assert [p for p in replaced if alive(p)] == []
