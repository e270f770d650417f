"""deploy/lab/ha-lab.sh: the whole HA layout on this machine (3-node RabbitMQ
cluster with quorum queues and role accounts, a PostgreSQL cluster of its
own, 3 APIs behind HAProxy, 3 schedulers, 2 conductors, a fake compute) comes
up, builds and deletes a VM through HAProxy, reports its state; with a broker
node, an API, a scheduler and a conductor killed at once a VM is still built,
status names them, and `up` again starts just those; `down` leaves no process, port, directory or
PostgreSQL cluster behind."""
import json
import os
import shlex
import socket
import subprocess
import time
import uuid

import pytest
import requests

from mininova_lab.waiting import wait_for

pytestmark = pytest.mark.real_services("rabbitmq", "postgresql", "http")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "deploy", "lab", "ha-lab.sh")


def lab(action, path, timeout=300):
    return subprocess.run(["bash", SCRIPT, action, path], capture_output=True, text=True,
                          timeout=timeout)


def parse_facts(text):
    facts = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.startswith("HA_LAB_"):
            facts[key] = shlex.split(value)[0] if value else ""
    return facts


def port_open(port):
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def processes_naming(path):
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open("/proc/%s/stat" % pid) as f:
                state = f.read().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if path in cmdline and state != "Z":
            found.append((pid, cmdline))
    return found


def pg_clusters():
    return subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True).stdout


def create_with_retries(http, url, name, timeout=60):
    """POST /v1/vms with an X-Idempotency-Key, sent again with the same key
    while the connection fails or the answer is 502/503/504 (as a client of a
    replicated API does): the VM's id."""
    key = str(uuid.uuid4())
    failures = []

    def attempt():
        try:
            r = http.post(url + "/v1/vms", headers={"X-Idempotency-Key": key}, timeout=30,
                          json={"name": name, "image": "tiny", "flavor": "m1.tiny"})
        except requests.RequestException as e:
            failures.append(type(e).__name__)
            return None
        if r.status_code in (502, 503, 504):
            failures.append(r.status_code)
            return None
        assert r.status_code == 202, r.text
        return r.json()["vm"]["id"]
    return wait_for(attempt, timeout, what="a create answered (failures: %s)" % failures)


def active_vm(http, url, vm_id):
    def check():
        vm = http.get(url + "/v1/vms/" + vm_id, timeout=30).json()["vm"]
        assert vm["status"] != "ERROR", vm
        return vm if vm["status"] == "ACTIVE" else None
    return check


@pytest.fixture
def lab_dir():
    # Not under pytest's tmp dir: the rabbitmq user must reach the nodes' dirs.
    path = "/var/tmp/mininova-halab-" + uuid.uuid4().hex[:8]
    yield path
    lab("down", path)


def test_lab_comes_up_builds_a_vm_through_haproxy_survives_kills_and_goes_away(lab_dir):
    proc = lab("up", lab_dir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    facts = parse_facts(proc.stdout)
    pids = dict(item.split("=") for item in facts["HA_LAB_PIDS"].split())
    assert sorted(pids) == sorted(["scheduler1", "scheduler2", "scheduler3", "conductor1",
                                   "conductor2", "compute1", "api1", "api2", "api3",
                                   "haproxy"])
    assert facts["HA_LAB_TRANSPORT_URL"].count("@127.0.0.1:") == 3
    with open(os.path.join(lab_dir, "pg.env")) as f:
        pg_name = dict(line.strip().split("=", 1) for line in f if "=" in line)["PG_NAME"]
    assert pg_name in pg_clusters()
    with open(os.path.join(lab_dir, "rabbit", "facts")) as f:
        rabbit = dict(line.strip().split("=", 1) for line in f if "=" in line)
    ports = [int(p) for p in rabbit["RABBIT_CLUSTER_PORTS"].strip('"').split()]
    ports.append(int(rabbit["RABBIT_CLUSTER_EPMD_PORT"]))
    ports.append(int(facts["HA_LAB_URL"].rpartition(":")[2]))
    ports.append(int(facts["HA_LAB_DB_URL"].rpartition(":")[2].split("/")[0]))
    try:
        http = requests.Session()
        http.headers["X-Auth-Token"] = facts["HA_LAB_TOKEN"]
        url = facts["HA_LAB_URL"]
        r = http.post(url + "/v1/vms", json={"name": "lab-vm", "image": "tiny",
                                            "flavor": "m1.tiny"}, timeout=30)
        assert r.status_code == 202, r.text
        vm_id = r.json()["vm"]["id"]

        def active():
            vm = http.get(url + "/v1/vms/" + vm_id, timeout=30).json()["vm"]
            assert vm["status"] != "ERROR", vm
            return vm if vm["status"] == "ACTIVE" else None
        assert wait_for(active, 60, what="the VM ACTIVE")["host"] == "lab-compute1"
        r = http.delete(url + "/v1/vms/" + vm_id, timeout=30)
        assert r.status_code in (202, 204), r.text
        wait_for(lambda: http.get(url + "/v1/vms/" + vm_id, timeout=30).status_code == 404,
                 60, what="the VM gone")

        status = lab("status", lab_dir)
        assert status.returncode == 0, status.stdout + status.stderr
        for line in ("n1: running", "n2: running", "n3: running", "api1 UP", "api2 UP",
                     "api3 UP", "scheduler3 running", "conductor2 running", "compute1 running"):
            assert line in status.stdout, status.stdout
        assert " online " in status.stdout, status.stdout

        # Quorum queues on the three nodes, consumed by every daemon of its role,
        # each daemon on its own broker account.
        ctl = ["bash", os.path.join(ROOT, "deploy", "lab", "rabbit-node.sh"), "ctl",
               os.path.join(lab_dir, "rabbit", "n1"), "-q"]
        def layout():
            # Waited for: a daemon's consumer is briefly gone while it
            # re-subscribes (seen once in CI: the scheduler queue with 0).
            rows = json.loads(subprocess.run(
                ctl + ["list_queues", "-p", "mininova", "name", "type", "consumers", "members",
                       "--formatter", "json"], capture_output=True, text=True,
                check=True).stdout)
            queues = {r["name"]: r for r in rows}
            for name, consumers in (("scheduler", 3), ("conductor", 2),
                                    ("compute.lab-compute1", 1), ("mininova.dead", 0)):
                assert queues[name]["type"] == "quorum", queues[name]
                assert queues[name]["consumers"] == consumers, queues[name]
                assert len(queues[name]["members"]) == 3, queues[name]
            return True
        wait_for(layout, 60, interval=1, what="the quorum queues and their consumers")
        users = subprocess.run(ctl + ["list_users"], capture_output=True, text=True,
                               check=True).stdout
        for role in ("api", "scheduler", "conductor", "manage", "compute.lab-compute1"):
            assert "mininova.%s\t" % role in users, users

        # One of each gone at once (kill -9): a broker node, an API, a scheduler,
        # a conductor. A client retrying with its idempotency key still gets
        # its VM built; status names what is down; up starts just those again.
        node_dir = os.path.join(lab_dir, "rabbit", "n1")
        subprocess.run(["bash", os.path.join(ROOT, "deploy", "lab", "rabbit-node.sh"), "kill",
                        node_dir], check=True)
        subprocess.run(["bash", os.path.join(ROOT, "deploy", "lab", "ha-apis.sh"), "kill",
                        os.path.join(lab_dir, "apis"), "1"], check=True)
        for name in ("scheduler2", "conductor1"):
            os.kill(int(pids[name]), 9)
        killed_at = time.monotonic()
        vm_id = create_with_retries(http, url, "after-kills")
        answered = time.monotonic() - killed_at
        wait_for(active_vm(http, url, vm_id), 60, what="the VM built after the kills")
        print("\nha-lab: after the kills (node n1, api1, scheduler2, conductor1): create "
              "answered %.3f s, VM ACTIVE %.3f s after the last kill"
              % (answered, time.monotonic() - killed_at))
        r = http.delete(url + "/v1/vms/" + vm_id, timeout=30)
        assert r.status_code in (202, 204), r.text
        wait_for(lambda: http.get(url + "/v1/vms/" + vm_id, timeout=30).status_code == 404,
                 60, what="the VM gone")
        status = lab("status", lab_dir)
        assert status.returncode == 1, status.stdout + status.stderr
        for line in ("n1: not running", "scheduler2 not running", "conductor1 not running"):
            assert line in status.stdout, status.stdout

        again = lab("up", lab_dir)
        assert again.returncode == 0, again.stdout + again.stderr
        pids2 = dict(item.split("=") for item in parse_facts(again.stdout)["HA_LAB_PIDS"].split())
        restarted = {"api1", "scheduler2", "conductor1"}
        assert all(pids2[name] != pids[name] for name in restarted), (pids, pids2)
        assert {k: v for k, v in pids2.items() if k not in restarted} == \
            {k: v for k, v in pids.items() if k not in restarted}
        assert parse_facts(again.stdout)["HA_LAB_URL"] == url
        status = lab("status", lab_dir)
        assert status.returncode == 0, status.stdout + status.stderr
        vm_id = create_with_retries(http, url, "after-up")
        wait_for(active_vm(http, url, vm_id), 60, what="a VM built after up")
    finally:
        down = lab("down", lab_dir)
    assert down.returncode == 0, down.stdout + down.stderr
    assert not os.path.exists(lab_dir)
    assert processes_naming(lab_dir) == []
    assert pg_name not in pg_clusters()
    wait_for(lambda: not any(port_open(p) for p in ports), 30, what="the lab's ports closed")
    assert lab("down", lab_dir).returncode == 0   # nothing left to do
