"""End to end: API -> RabbitMQ -> scheduler -> compute -> libvirt, real services."""
import concurrent.futures
import os
import time

import pytest
import sqlalchemy as sa

from mininova_lab.stack import domain_names, virsh
from mininova_lab.waiting import wait_for

pytestmark = pytest.mark.real_services("rabbitmq", "postgresql", "libvirt", "http")


def _db(stack):
    return sa.create_engine(stack.db_url)


def _create(stack, name, image="blank", flavor="m1.tiny"):
    r = stack.post("/v1/vms", {"name": name, "image": image, "flavor": flavor})
    assert r.status_code == 202, r.text
    return r


def test_create_show_list_delete(stack):
    t0 = time.monotonic()
    r = _create(stack, "web1")
    vm = r.json()["vm"]
    assert r.headers["Location"] == "/v1/vms/" + vm["id"]
    assert vm["status"] == "BUILD" and vm["task_state"] == "scheduling"
    request_id = r.headers["X-Request-Id"]
    assert request_id.startswith("req-")

    active = stack.wait_status(vm["id"], "ACTIVE", timeout=60)
    print("\nPOST -> ACTIVE: %.0f ms" % ((time.monotonic() - t0) * 1000))
    assert active["power_state"] == "running"
    assert active["host"] == stack.host
    assert active["vm_state"] == "active" and active["task_state"] is None
    domain = "mininova-" + vm["id"]
    assert virsh("domstate", domain).stdout.strip() == "running"

    # The overlay sits on the cached base, by absolute path.
    overlay = os.path.join(stack.instances_path, vm["id"], "disk")
    info = virsh("domblklist", domain).stdout
    assert overlay in info

    # Show by id and by name; list.
    assert stack.vm("web1")["id"] == vm["id"]
    listed = stack.get("/v1/vms").json()["vms"]
    assert vm["id"] in [v["id"] for v in listed]

    # The request id travelled through every daemon.
    logs = stack.logs_text()
    for name in ("api", "scheduler", "compute"):
        with open(os.path.join(stack.logs, name + ".log")) as f:
            assert request_id in f.read(), "%s log lacks %s" % (name, request_id)
    assert logs

    # Delete: domain, overlay, row and allocation all go.
    r = stack.delete("/v1/vms/web1")
    assert r.status_code == 202
    assert stack.delete("/v1/vms/" + vm["id"]).status_code in (202, 404)  # twice: harmless
    stack.wait_gone(vm["id"])
    assert domain not in domain_names()
    assert not os.path.exists(os.path.dirname(overlay))
    with _db(stack).connect() as c:
        row = c.execute(sa.text("SELECT vm_state, deleted_at FROM instances WHERE id = :i"),
                        {"i": vm["id"]}).one()
        assert row.vm_state == "deleted" and row.deleted_at is not None
        assert c.execute(sa.text("SELECT count(*) FROM allocations WHERE consumer_id = :i"),
                         {"i": vm["id"]}).scalar() == 0
    assert stack.delete("/v1/vms/" + vm["id"]).status_code == 404


def test_rollback_when_base_image_missing(stack, tmp_path):
    from mininova_lab.stack import qemu_img_create
    path = str(tmp_path / "doomed.qcow2")
    qemu_img_create(path, "1G")
    image = stack.add_image("doomed", path)
    with _db(stack).connect() as c:
        location = c.execute(sa.text("SELECT location FROM images WHERE id = :i"),
                             {"i": image["id"]}).scalar()
    os.unlink(location)  # the store lost the file

    vm = _create(stack, "doomed1", image="doomed").json()["vm"]
    failed = stack.wait_status(vm["id"], "ERROR", timeout=60)
    assert "doomed" in failed["fault"]["message"] or image["id"] in failed["fault"]["message"]
    assert "mininova-" + vm["id"] not in domain_names()
    assert not os.path.exists(os.path.join(stack.instances_path, vm["id"]))
    with _db(stack).connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM allocations WHERE consumer_id = :i"),
                         {"i": vm["id"]}).scalar() == 0
    assert stack.delete("/v1/vms/" + vm["id"]).status_code == 202
    stack.wait_gone(vm["id"])


def _used(stack):
    with _db(stack).connect() as c:
        return tuple(c.execute(sa.text("SELECT vcpus_used, memory_mb_used, local_gb_used "
                                       "FROM compute_nodes WHERE host = :h"),
                               {"h": stack.host}).one())


def test_twenty_concurrent_creates(stack):
    used_before = _used(stack)
    names = ["burst-%02d" % i for i in range(20)]
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(lambda n: stack.post(
            "/v1/vms", {"name": n, "image": "blank", "flavor": "m1.tiny"}), names))
    assert [r.status_code for r in responses] == [202] * 20
    ids = [r.json()["vm"]["id"] for r in responses]

    def all_active():
        vms = {v["id"]: v for v in stack.get("/v1/vms").json()["vms"]}
        errors = [v for i, v in vms.items() if i in ids and v["status"] == "ERROR"]
        assert not errors, errors
        return all(vms[i]["status"] == "ACTIVE" for i in ids)
    wait_for(all_active, 120, interval=0.2, what="20 VMs ACTIVE")
    print("\n20 concurrent POSTs -> all ACTIVE: %.1f s" % (time.monotonic() - t0))
    domains = domain_names()
    assert all("mininova-" + i in domains for i in ids)

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        assert set(pool.map(lambda i: stack.delete("/v1/vms/" + i).status_code, ids)) == {202}
    for i in ids:
        stack.wait_gone(i)
    domains = domain_names()
    assert not any("mininova-" + i in domains for i in ids)
    assert _used(stack) == used_before  # every allocation freed


def test_duplicate_name_race(stack):
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(lambda _: stack.post(
            "/v1/vms", {"name": "same", "image": "blank", "flavor": "m1.tiny"}).status_code,
            range(20)))
    assert sorted(codes) == [202] + [409] * 19
    r = stack.post("/v1/vms", {"name": "same", "image": "blank", "flavor": "m1.tiny"})
    assert r.status_code == 409
    assert "same" in r.json()["error"]["message"]
    # Another project may use the name, and cannot see ours.
    other = {"X-Auth-Token": stack.token("other")}
    r = stack.post("/v1/vms", {"name": "same", "image": "blank", "flavor": "m1.tiny"},
                   headers=other)
    assert r.status_code == 202
    other_id = r.json()["vm"]["id"]
    mine = stack.wait_status("same", "ACTIVE")
    assert stack.get("/v1/vms/" + mine["id"], headers=other).status_code == 404
    stack.delete("/v1/vms/same")
    stack.wait_gone("same")
    # Once deleted, the name is free again.
    again = _create(stack, "same").json()["vm"]["id"]
    for ref, headers in ((again, None), (other_id, other)):
        stack.delete("/v1/vms/" + ref, headers=headers)
    stack.wait_gone(again)
    wait_for(lambda: stack.get("/v1/vms/" + other_id, headers=other).status_code == 404, 60,
             what="the other project's VM gone")


def test_bad_requests(stack):
    cases = [
        (b"{not json", "application/json", 400, "malformed JSON"),
        (b'{"image": "blank", "flavor": "m1.tiny"}', "application/json", 400, "name"),
        (b'{"name": 5, "image": "blank", "flavor": "m1.tiny"}', "application/json", 400, "name"),
        (b'{"name": "a b", "image": "blank", "flavor": "m1.tiny"}', "application/json", 400, "name"),
        (b'{"name": "' + b"x" * 64 + b'", "image": "blank", "flavor": "m1.tiny"}',
         "application/json", 400, "name"),
        (b'{"name": "ok", "image": "blank", "flavor": "m1.tiny", "extra": 1}',
         "application/json", 400, "extra"),
        (b'{"name": "ok", "image": "nope", "flavor": "m1.tiny"}', "application/json", 404, "nope"),
        (b'{"name": "ok", "image": "blank", "flavor": "m9.huge"}', "application/json", 404, "m9.huge"),
        (b'{"name": "ok", "image": "blank", "flavor": "m1.tiny"}', "text/plain", 415, "content type"),
        (b'[]', "application/json", 400, "type"),
    ]
    for body, ctype, code, needle in cases:
        r = stack.http.post(stack.url + "/v1/vms", data=body, headers={"Content-Type": ctype},
                            timeout=10)
        assert r.status_code == code, (body, r.status_code, r.text)
        error = r.json()["error"]
        assert error["code"] == code and needle in error["message"], (body, error)
        assert r.headers["X-Request-Id"].startswith("req-")
    assert stack.get("/v1/vms/no-such-vm").status_code == 404
    assert stack.delete("/v1/vms/no-such-vm").status_code == 404
    assert stack.get("/v1/nothing-here").status_code == 404
    assert stack.http.put(stack.url + "/v1/vms", timeout=10).status_code == 405
    # Nothing was created by any of it.
    assert not [v for v in stack.get("/v1/vms").json()["vms"] if v["name"] == "ok"]


def test_flavors_and_images(stack):
    flavors = {f["name"]: f for f in stack.get("/v1/flavors").json()["flavors"]}
    assert flavors["m1.tiny"] == {"id": "1", "name": "m1.tiny", "vcpus": 1, "ram": 128, "disk": 1}
    assert {"m1.small", "m1.medium", "m1.large"} <= set(flavors)
    images = {i["name"]: i for i in stack.get("/v1/images").json()["images"]}
    assert images["blank"]["checksum"] == stack.image["checksum"]


def test_action_timeline_of_create_and_delete(stack):
    r = _create(stack, "timeline1")
    vm, request_id = r.json()["vm"], r.headers["X-Request-Id"]
    stack.wait_status(vm["id"], "ACTIVE")

    def finished():
        action = stack.get("/v1/vms/%s/actions/%s" % (vm["id"], request_id)).json()["action"]
        return action if action["result"] == "success" else None
    action = wait_for(finished, 60, what="the create action to finish")
    assert action["action"] == "create"
    events = [(e["event"], e["host"]) for e in action["events"]]
    for expected in ("accepted", "scheduled", "image fetched", "disk cloned", "domain defined",
                     "domain started", "reported"):
        assert expected in [e for e, _ in events], events
    assert {e["host"] for e in action["events"]} == {stack.host}  # a one-host stack
    assert all(e["duration_ms"] is not None for e in action["events"])
    print("\ncreate timeline: " + ", ".join("%s %s ms" % (e["event"], e["duration_ms"])
                                            for e in action["events"]))

    r = stack.delete("/v1/vms/" + vm["id"])
    delete_id = r.headers["X-Request-Id"]
    stack.wait_gone(vm["id"])
    def both_finished():
        actions = stack.get("/v1/vms/%s/actions" % vm["id"]).json()["actions"]
        done = {a["request_id"] for a in actions if a["result"]}
        return actions if done >= {request_id, delete_id} else None
    actions = wait_for(both_finished, 60, what="both actions finished")
    assert actions[0]["action"] == "delete"  # newest first; readable after the delete


def test_quota_burst_and_paging_on_postgresql(stack):
    """20 concurrent creates against a limit of 5 on PostgreSQL: exactly 5
    pass (the lock of the project's usage row 0, taken last in each limited
    create, serializes them);
    the 5 then page through ?limit=2 in order, following the next links."""
    headers = {"X-Auth-Token": stack.token("burst5")}
    stack.manage("quota", "set", "burst5", "--instances", "5")
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(lambda i: stack.post(
            "/v1/vms", {"name": "q%02d" % i, "image": "blank", "flavor": "m1.tiny"},
            headers=headers), range(20)))
    codes = sorted(r.status_code for r in responses)
    assert codes == [202] * 5 + [403] * 15, [r.text for r in responses if r.status_code >= 500]
    created = [r.json()["vm"]["id"] for r in responses if r.status_code == 202]
    project_id = next(r.json()["vm"]["project_id"] for r in responses if r.status_code == 202)
    assert all("Quota exceeded for instances" in r.json()["error"]["message"]
               for r in responses if r.status_code == 403)

    everything = stack.get("/v1/vms", headers=headers).json()
    assert "vms_links" not in everything
    pages, url = [], stack.url + "/v1/vms?limit=2"
    while url:
        body = stack.http.get(url, headers=headers, timeout=10).json()
        pages.append([vm["id"] for vm in body["vms"]])
        url = body["vms_links"][0]["href"] if "vms_links" in body else None
    assert [len(p) for p in pages] == [2, 2, 1]
    assert sum(pages, []) == [vm["id"] for vm in everything["vms"]]
    assert sorted(sum(pages, [])) == sorted(created)
    r = stack.get("/v1/vms?marker=" + "0" * 8 + "-0000-4000-8000-" + "0" * 12, headers=headers)
    assert r.status_code == 400 and "marker" in r.json()["error"]["message"]

    for vm_id in created:
        assert stack.delete("/v1/vms/" + vm_id, headers=headers).status_code == 202
    for vm_id in created:
        wait_for(lambda: stack.get("/v1/vms/" + vm_id, headers=headers).status_code == 404,
                 60, what="VM %s gone" % vm_id)
    quota = stack.get("/v1/quotas/" + project_id, headers=headers).json()["quota"]
    assert quota["usage"] == {"instances": 0, "cores": 0, "ram": 0}


def test_daemons_reconnect_when_their_db_connections_are_cut(stack):
    """Every pooled DB connection of the daemons killed by the server (as a
    PostgreSQL restart does): the next requests find them dead at checkout
    (no SELECT 1 per checkout any more) and answer from fresh ones; a VM
    created right after is built as usual."""
    assert stack.get("/v1/vms").status_code == 200  # the API has pooled connections
    engine = _db(stack)
    with engine.connect() as c:
        killed = c.execute(sa.text(
            "SELECT array_agg(pid) FROM pg_stat_activity "
            "WHERE datname = :db AND pid <> pg_backend_pid()"), {"db": stack.db_name}).scalar()
        assert killed
        c.execute(sa.text("SELECT pg_terminate_backend(p) FROM unnest(:pids) AS p"),
                  {"pids": killed})

    def all_exited():  # pg_terminate_backend only signals
        with engine.connect() as c:
            return not c.execute(sa.text("SELECT count(*) FROM pg_stat_activity "
                                         "WHERE pid = ANY(:pids)"), {"pids": killed}).scalar()
    wait_for(all_exited, 60, what="the terminated backends to exit")
    for _ in range(3):
        r = stack.get("/v1/vms")
        assert r.status_code == 200, r.text
    vm = _create(stack, "after-cut").json()["vm"]
    stack.wait_status(vm["id"], "ACTIVE", timeout=60)
    assert stack.delete("/v1/vms/" + vm["id"]).status_code == 202
    stack.wait_gone(vm["id"])
