"""mininova-manage audit: the pure finder (with the races it must not take for
orphans), the compute side on libvirt's test driver, and the whole command on
SQLite with the in-memory RPC transport."""
import argparse
import datetime
import json
import os
import threading
import uuid

import pytest
import sqlalchemy as sa

from common import rpc, states
from nova_manage import audit
from nova_manage.audit import DbView, Finding, find_orphans, stable_findings
from common.db import api as db_api
from common.db.models import Allocation, ComputeNode, Instance
from nova_compute import rpcapi as compute_rpcapi
from nova_compute.audit_responder import AuditResponder
from nova_conductor.manager import ConductorManager
from tests.unit.test_compute_manager import (  # noqa: F401 (fixtures)
    CTXT, base_image, manager, placed_vm)

NOW = datetime.datetime(2024, 5, 1, 12, 0, 0)
H, G = "h1", "h2"


def vid(n):
    return "00000000-0000-4000-8000-%012d" % n


def row(host=H, vm_state=states.ACTIVE, task_state=None, age=10):
    return {"host": host, "vm_state": vm_state, "task_state": task_state,
            "updated_at": NOW - datetime.timedelta(seconds=age)}


def alloc(host=H, vcpus=1, memory_mb=128, disk_gb=1):
    return {"host": host, "vcpus": vcpus, "memory_mb": memory_mb, "disk_gb": disk_gb}


def view(instances=(), allocations=None, nodes=None, services=(H, G), moves=None):
    """A DbView whose allocations ({consumer: alloc(...) or [alloc(...), ...]})
    default to one per row with a host, and whose nodes' sums default to the
    allocations' (a consistent DB)."""
    instances = dict(instances)
    if allocations is None:
        allocations = {i: alloc(r["host"]) for i, r in instances.items() if r["host"]}
    held = [dict(a, consumer=consumer) for consumer, a_or_list in allocations.items()
            for a in (a_or_list if isinstance(a_or_list, list) else [a_or_list])]
    if nodes is None:
        nodes = {}
        for h in services:
            mine = [c for c in held if c["host"] == h]
            nodes[h] = {"vcpus_used": sum(c["vcpus"] for c in mine),
                        "memory_mb_used": sum(c["memory_mb"] for c in mine),
                        "local_gb_used": sum(c["disk_gb"] for c in mine)}
    return DbView(NOW, instances, held, {h: {"last_heartbeat": NOW, "disabled": False}
                                         for h in services}, nodes, dict(moves or {}))


def report(domains=(), dirs=None, power="running"):
    """A host's report; every domain has its directory unless ``dirs`` says."""
    domains = {d: power for d in domains}
    return {"domains": domains, "dirs": sorted(domains if dirs is None else dirs),
            "images": []}


def keys(findings):
    """In the finder's order: by kind, then host, then VM."""
    return [(f.kind, f.host, f.vm, f.reason) for f in findings]


# -- a consistent world finds nothing ------------------------------------------

def test_consistent_world_has_no_findings():
    db = view({vid(1): row(), vid(2): row(vm_state=states.STOPPED),
               vid(3): row(host=G, vm_state=states.PAUSED),
               vid(4): row(host=None, vm_state=states.BUILDING, task_state=states.SCHEDULING)},
              allocations={vid(1): alloc(), vid(2): alloc(), vid(3): alloc(G)})
    reports = {H: report([vid(1), vid(2)]), G: report([vid(3)])}
    assert find_orphans(db, reports) == []


# -- orphan domains ----------------------------------------------------------------

def test_domain_without_live_row_is_an_orphan():
    findings = find_orphans(view({vid(1): row()}), {H: report([vid(1), vid(2)])})
    assert keys(findings) == [("orphan-domain", H, vid(2), "no-live-row")]
    assert findings[0].details == {"power": "running"}


def test_domain_whose_row_is_on_another_host_is_an_orphan():
    db = view({vid(1): row(host=G)})
    findings = find_orphans(db, {H: report([vid(1)]), G: report([vid(1)])})
    assert keys(findings) == [("orphan-domain", H, vid(1), "row-elsewhere")]
    assert findings[0].details["row_host"] == G


@pytest.mark.parametrize("vm_state,task_state", [
    (states.ACTIVE, states.DELETING), (states.ERROR, None),
    (states.BUILDING, states.SPAWNING), (states.STOPPED, states.POWERING_ON)])
def test_domain_with_its_row_here_in_any_state_is_not_an_orphan(vm_state, task_state):
    db = view({vid(1): row(vm_state=vm_state, task_state=task_state)})
    assert find_orphans(db, {H: report([vid(1)])}) == []


# -- orphan overlays ---------------------------------------------------------------

def test_directory_without_domain_or_row_is_an_orphan_overlay():
    findings = find_orphans(view(), {H: report([], dirs=[vid(7)])})
    assert keys(findings) == [("orphan-overlay", H, vid(7), "no-live-row")]


def test_directory_of_a_vm_being_built_here_is_not_an_orphan():
    # Row on H, spawning: the directory exists, the domain not yet.
    db = view({vid(1): row(vm_state=states.BUILDING, task_state=states.SPAWNING)})
    assert find_orphans(db, {H: report([], dirs=[vid(1)])}) == []


def test_directory_of_an_orphan_domain_is_reported_once_as_the_domain():
    findings = find_orphans(view(), {H: report([vid(1)])})
    assert keys(findings) == [("orphan-domain", H, vid(1), "no-live-row")]


def test_directory_left_after_a_reschedule_is_an_orphan_overlay():
    # The build failed on H, the VM waits for another host (no host yet).
    db = view({vid(1): row(host=None, vm_state=states.BUILDING,
                           task_state=states.SCHEDULING)}, allocations={})
    findings = find_orphans(db, {H: report([], dirs=[vid(1)])})
    assert keys(findings) == [("orphan-overlay", H, vid(1), "row-elsewhere")]


def test_directory_of_a_vm_now_on_another_host_is_an_orphan_overlay():
    db = view({vid(1): row(host=G)})
    findings = find_orphans(db, {H: report([], dirs=[vid(1)]), G: report([vid(1)])})
    assert keys(findings) == [("orphan-overlay", H, vid(1), "row-elsewhere")]
    assert findings[0].details == {"row_host": G, "vm_state": states.ACTIVE}


# -- allocations and node sums ----------------------------------------------------------

def test_allocation_without_live_row_is_an_orphan():
    db = view({vid(1): row()}, allocations={vid(1): alloc(), vid(9): alloc()})
    findings = find_orphans(db, {H: report([vid(1)])})
    assert keys(findings) == [("orphan-allocation", H, vid(9), "no-live-row")]
    assert findings[0].details == {"vcpus": 1, "memory_mb": 128, "disk_gb": 1}


def test_allocation_of_a_row_without_host_is_an_orphan():
    # No valid host: ERROR without a host must not hold an allocation.
    db = view({vid(1): row(host=None, vm_state=states.ERROR)}, allocations={vid(1): alloc()})
    assert keys(find_orphans(db, {H: report()})) == [
        ("orphan-allocation", H, vid(1), "row-has-no-host")]


def test_allocation_on_another_host_than_its_row_is_an_orphan():
    db = view({vid(1): row(host=G)}, allocations={vid(1): alloc(H)},
              nodes={H: {"vcpus_used": 1, "memory_mb_used": 128, "local_gb_used": 1},
                     G: {"vcpus_used": 0, "memory_mb_used": 0, "local_gb_used": 0}})
    findings = find_orphans(db, {H: report(), G: report([vid(1)])})
    assert keys(findings) == [("orphan-allocation", H, vid(1), "row-elsewhere")]
    assert findings[0].details["row_host"] == G


def test_error_vm_that_keeps_its_host_keeps_its_allocation():
    db = view({vid(1): row(vm_state=states.ERROR)})  # its domain vanished earlier
    assert find_orphans(db, {H: report()}) == []


MOVE = "00000000-0000-4000-9000-000000000001"


def moving(vm, source=H, dest=G):
    """A move of ``vm`` in progress from ``source`` to ``dest``."""
    return {vm: {"uuid": MOVE, "source_host": source, "dest_host": dest,
                 "status": "migrating"}}


def test_a_move_holding_source_and_destination_finds_nothing():
    """Mid-move the VM (row on its source) holds the destination and its
    migration holds the source; its domain exists on both hosts."""
    db = view({vid(1): row(host=H, task_state="resize_migrating")},
              allocations={vid(1): alloc(G), MOVE: alloc(H)}, moves=moving(vid(1)))
    assert find_orphans(db, {H: report([vid(1)]), G: report([vid(1)])}) == []


def test_a_move_allocation_on_a_host_not_in_the_move_is_an_orphan():
    db = view({vid(1): row(host=G)}, allocations={vid(1): alloc(G), MOVE: alloc(H)},
              moves=moving(vid(1), source="elsewhere", dest=G))
    findings = find_orphans(db, {H: report(), G: report([vid(1)])})
    assert keys(findings) == [("orphan-allocation", H, MOVE, "host-not-in-move")]


def test_an_ended_move_allocation_is_an_orphan():
    db = view({vid(1): row(host=G)}, allocations={vid(1): alloc(G), MOVE: alloc(H)})
    findings = find_orphans(db, {H: report(), G: report([vid(1)])})
    assert keys(findings) == [("orphan-allocation", H, MOVE, "no-live-row")]


def test_a_domain_arriving_or_leaving_in_a_move_is_no_orphan():
    db = view({vid(1): row(host=G, task_state="migrating")},
              allocations={vid(1): alloc(G), MOVE: alloc(H)}, moves=moving(vid(1)))
    assert find_orphans(db, {H: report([vid(1)]), G: report([vid(1)])}) == []
    no_move = view({vid(1): row(host=G, task_state="migrating")})
    assert keys(find_orphans(no_move, {H: report([vid(1)]), G: report([vid(1)])})) == [
        ("orphan-domain", H, vid(1), "row-elsewhere")]


def test_fixed_ip_held_by_a_vm_without_live_row_is_an_orphan():
    db = view({vid(1): row()})
    db.fixed_ips = [{"network": "mininova", "address": "192.168.123.10", "instance": vid(1)},
                    {"network": "mininova", "address": "192.168.123.11", "instance": vid(2)}]
    (f,) = find_orphans(db, {H: report([vid(1)])})
    assert (f.kind, f.host, f.vm, f.reason) == ("orphan-fixed-ip", None, vid(2), "no-live-row")
    assert f.line() == ("orphan-fixed-ip host=- vm=%s network=mininova "
                        "address=192.168.123.11 reason=no-live-row" % vid(2))


def test_node_sums_that_differ_from_the_allocations_are_reported():
    db = view({vid(1): row()}, nodes={
        H: {"vcpus_used": 3, "memory_mb_used": 128, "local_gb_used": 1},
        G: {"vcpus_used": 0, "memory_mb_used": 64, "local_gb_used": 0}})
    findings = find_orphans(db, {H: report([vid(1)]), G: report()})
    assert keys(findings) == [("usage-mismatch", H, None, "used-differs-from-allocations"),
                              ("usage-mismatch", G, None, "used-differs-from-allocations")]
    assert findings[0].details == {"vcpus_used": 3, "vcpus_allocated": 1,
                                   "memory_mb_used": 128, "memory_mb_allocated": 128,
                                   "local_gb_used": 1, "local_gb_allocated": 1}


# -- orphan rows -----------------------------------------------------------------------

def test_row_on_a_host_that_is_no_compute_service_is_an_orphan():
    db = view({vid(1): row(host="gone", vm_state=states.BUILDING, task_state=states.DELETING,
                           age=99999)}, allocations={})
    # Reported once, as host-gone (not also as stuck).
    assert keys(find_orphans(db, {})) == [("orphan-row", "gone", vid(1), "host-gone")]


@pytest.mark.parametrize("vm_state", [states.ACTIVE, states.STOPPED, states.PAUSED,
                                      states.SUSPENDED])
def test_resting_row_whose_domain_is_missing_is_an_orphan(vm_state):
    db = view({vid(1): row(vm_state=vm_state)})
    findings = find_orphans(db, {H: report([], dirs=[vid(1)])})
    assert keys(findings) == [("orphan-row", H, vid(1), "domain-missing")]


@pytest.mark.parametrize("vm_state,task_state", [
    (states.ACTIVE, states.POWERING_OFF), (states.ACTIVE, states.DELETING),
    (states.BUILDING, states.SPAWNING), (states.ERROR, None)])
def test_row_without_domain_that_does_not_claim_one_is_not_an_orphan(vm_state, task_state):
    db = view({vid(1): row(vm_state=vm_state, task_state=task_state)})
    assert find_orphans(db, {H: report()}) == []


def test_rows_of_a_host_that_did_not_answer_are_not_judged_by_its_hypervisor():
    db = view({vid(1): row()})
    assert find_orphans(db, {}) == []  # H down or unreachable


# -- stuck rows ------------------------------------------------------------------------

def test_rows_building_or_deleting_too_long_are_stuck():
    db = view({vid(1): row(host=None, vm_state=states.BUILDING, task_state=states.SCHEDULING,
                           age=4000),
               vid(2): row(vm_state=states.ACTIVE, task_state=states.DELETING, age=4000),
               vid(3): row(vm_state=states.BUILDING, task_state=states.SPAWNING, age=100),
               vid(4): row(vm_state=states.ACTIVE, age=99999)},
              allocations={vid(2): alloc(), vid(3): alloc(), vid(4): alloc()})
    findings = find_orphans(db, {H: report([vid(2), vid(4)], dirs=[vid(2), vid(3), vid(4)])},
                            stuck_after=3600)
    assert keys(findings) == [("stuck-row", None, vid(1), "building"),
                              ("stuck-row", H, vid(2), "deleting")]
    assert findings[0].details["age_s"] == 4000
    assert find_orphans(db, {H: report([vid(2), vid(4)], dirs=[vid(2), vid(3), vid(4)])},
                        stuck_after=5000) == []


# -- races: a finding must hold before and after the hosts were asked --------------------

def test_build_finishing_while_hosts_are_asked_is_no_missing_domain():
    # Before: spawning. The host was asked before the domain was defined.
    # After: ACTIVE. Each look alone is consistent; together no orphan.
    before = view({vid(1): row(vm_state=states.BUILDING, task_state=states.SPAWNING)})
    reports = {H: report([], dirs=[vid(1)])}
    after = view({vid(1): row()})
    assert keys(find_orphans(after, reports)) == [("orphan-row", H, vid(1), "domain-missing")]
    assert stable_findings(find_orphans(before, reports), find_orphans(after, reports)) == []


def test_vm_created_after_the_first_look_is_no_orphan_domain():
    before = view()
    reports = {H: report([vid(1)])}  # built meanwhile
    after = view({vid(1): row(vm_state=states.BUILDING, task_state=states.SPAWNING)})
    assert keys(find_orphans(before, reports)) == [("orphan-domain", H, vid(1), "no-live-row")]
    assert stable_findings(find_orphans(before, reports), find_orphans(after, reports)) == []


def test_vm_deleted_after_the_hosts_were_asked_is_no_orphan_domain():
    before = view({vid(1): row(task_state=states.DELETING)})
    reports = {H: report([vid(1)])}  # destroyed and soft-deleted after this
    after = view()
    assert stable_findings(find_orphans(before, reports), find_orphans(after, reports)) == []


def test_findings_that_hold_all_along_are_kept_with_the_latest_values():
    before = view({vid(1): row()}, nodes={
        H: {"vcpus_used": 5, "memory_mb_used": 128, "local_gb_used": 1},
        G: {"vcpus_used": 0, "memory_mb_used": 0, "local_gb_used": 0}})
    after = view({vid(1): row()}, nodes={
        H: {"vcpus_used": 6, "memory_mb_used": 128, "local_gb_used": 1},
        G: {"vcpus_used": 0, "memory_mb_used": 0, "local_gb_used": 0}})
    reports = {H: report([vid(1), vid(2)]), G: report()}
    found = stable_findings(find_orphans(before, reports), find_orphans(after, reports))
    assert keys(found) == [("orphan-domain", H, vid(2), "no-live-row"),
                           ("usage-mismatch", H, None, "used-differs-from-allocations")]
    assert found[1].details["vcpus_used"] == 6


# -- output ------------------------------------------------------------------------------

def test_output_lines():
    assert Finding("orphan-domain", H, vid(1), "no-live-row", {"power": "running"}).line() == (
        "orphan-domain host=h1 vm=%s power=running reason=no-live-row" % vid(1))
    f = Finding("orphan-overlay", H, vid(2), "row-elsewhere", {"row_host": None,
                                                              "vm_state": "building"})
    f.fix = "skipped:a live row puts it on this host now (building/spawning)"
    assert f.line() == ("orphan-overlay host=h1 vm=%s row_host=- vm_state=building "
                        "reason=row-elsewhere fix=\"skipped:a live row puts it on this host "
                        "now (building/spawning)\"" % vid(2))
    assert not f.remaining
    f.fix = "failed:boom"
    assert f.remaining
    assert Finding("usage-mismatch", H, None, "used-differs-from-allocations", {
        "vcpus_used": 2, "vcpus_allocated": 1}).line() == (
        "usage-mismatch host=h1 vcpus_used=2 vcpus_allocated=1 reason=used-differs-from-allocations")


# -- the compute side, on libvirt's test driver ------------------------------------------

def build(manager, db, conf, base_image, name):
    instance, image = placed_vm(db, conf, *base_image, name=name)
    manager.sources[image["id"]] = base_image[0]
    manager.build_instance(CTXT, instance, image)
    return instance["id"]


def sql(db, statement, **params):
    with db.transaction() as s:
        return s.execute(sa.text(statement), params)


def forget_row(db, instance_id):
    """The row goes behind mininova's back; domain, directory and allocation stay."""
    sql(db, "UPDATE instances SET deleted_at = :t, vm_state = 'deleted' WHERE id = :i",
        t=datetime.datetime(2024, 1, 1), i=instance_id)


def test_report_lists_domains_directories_and_images(manager, db, conf, base_image):
    vm = build(manager, db, conf, base_image, "r1")
    instances = conf.compute.instances_path
    stray = str(uuid.uuid4())
    os.makedirs(os.path.join(instances, stray))
    os.makedirs(os.path.join(instances, "not-a-uuid"))
    os.makedirs(os.path.join(instances, stray.upper()))
    open(os.path.join(instances, str(uuid.uuid4())), "w").close()  # a file, not a dir
    got = manager.audit_report(CTXT)
    assert got["host"] == conf.host
    assert got["domains"] == [{"id": vm, "power_state": "running"}]  # not libvirt's "test"
    assert got["dirs"] == sorted([vm, stray])
    assert len(got["images"]) == 1 and not got["images"][0].startswith(".")


def test_fix_destroys_orphans_and_spares_a_vm_with_its_row_here(manager, db, conf, base_image):
    keep = build(manager, db, conf, base_image, "keep")
    orphan = build(manager, db, conf, base_image, "orphan")
    forget_row(db, orphan)
    stray = str(uuid.uuid4())
    os.makedirs(os.path.join(conf.compute.instances_path, stray))
    got = manager.audit_fix(CTXT, [keep, orphan, stray, "../etc"])
    assert got[keep].startswith("skipped:a live row puts it on this host")
    assert got[orphan] == got[stray] == "destroyed"
    assert got["../etc"].startswith("failed:")
    assert [d["id"] for d in manager.driver.list_instances()] == [keep]
    assert manager.audit_report(CTXT)["dirs"] == [keep]


def test_fix_waits_for_the_vm_lock_and_rechecks_the_row(manager, db, conf, base_image):
    """A build holds the VM's lock; the scheduler put the VM on this host
    after the audit looked. audit_fix must wait and then leave it alone."""
    vm = build(manager, db, conf, base_image, "racer")
    sql(db, "UPDATE instances SET host = NULL, task_state = 'scheduling' WHERE id = :i", i=vm)
    result = {}
    with manager.locks.lock(vm):
        t = threading.Thread(target=lambda: result.update(manager.audit_fix(CTXT, [vm])))
        t.start()
        t.join(0.3)
        assert t.is_alive()  # waiting for the lock, nothing destroyed yet
        sql(db, "UPDATE instances SET host = :h, task_state = 'spawning' WHERE id = :i",
            h=conf.host, i=vm)
    t.join(10)
    assert result[vm].startswith("skipped:")
    assert [d["id"] for d in manager.driver.list_instances()] == [vm]


def test_fix_makes_no_destroy_without_an_answer_from_the_conductor(manager, db, conf,
                                                                     base_image):
    vm = build(manager, db, conf, base_image, "mute")
    forget_row(db, vm)

    class Mute:
        def instance_get(self, ctxt, instance_id):
            from common import exception
            raise exception.MessagingTimeout(method="instance_get", topic="conductor",
                                             timeout=1)
    responder = AuditResponder(manager.driver, Mute(), None, manager.locks, manager.addresses,
                               conf)
    assert responder.fix(CTXT, [vm])[vm].startswith("failed:could not re-check")
    assert [d["id"] for d in manager.driver.list_instances()] == [vm]


# -- the whole command: SQLite, in-memory RPC, a compute endpoint on the test driver -------

@pytest.fixture
def rpc_compute(conf, manager):
    conf.set_override("transport_url", "memory://audit-%s" % uuid.uuid4().hex)
    transport = rpc.get_transport(conf.transport_url)
    server = rpc.RPCServer(transport, rpc.Target(compute_rpcapi.TOPIC, server=conf.host,
                                                 version=compute_rpcapi.VERSION),
                           [manager], workers=4)
    server.start()
    yield manager
    server.stop()
    server.wait()


def run(conf, capsys, **kw):
    args = argparse.Namespace(fix=kw.pop("fix", False), json=True, **kw)
    code = audit.audit_command(conf, args)
    return code, json.loads(capsys.readouterr().out)


def found(out):
    return sorted((f["kind"], f["host"], f["vm"], f["reason"]) for f in out["findings"])


def test_audit_command_finds_fixes_and_then_finds_nothing(rpc_compute, db, conf, base_image,
                                                          capsys):
    manager = rpc_compute
    keep = build(manager, db, conf, base_image, "keep")
    rowless = build(manager, db, conf, base_image, "rowless")
    vanished = build(manager, db, conf, base_image, "vanished")
    forget_row(db, rowless)                        # domain, directory and allocation stay
    manager.driver.destroy(vanished)               # the row says it is active
    stray_dir = str(uuid.uuid4())
    os.makedirs(os.path.join(conf.compute.instances_path, stray_dir))
    stray_allocation = str(uuid.uuid4())
    with db.transaction() as s:                    # an allocation nobody counted
        s.add(Allocation(consumer_id=stray_allocation, host=conf.host, vcpus=2, memory_mb=64,
                         disk_gb=1))
        ghost = db_api.instance_create(s, name="ghost", project_id="p", image_id="x",
                                       flavor_id="1", vcpus=1, memory_mb=64, root_gb=1,
                                       vm_state=states.ACTIVE, host="decommissioned")
        ghost = ghost.id
    # A compute service that heartbeats but does not answer.
    ConductorManager(db).service_heartbeat(CTXT, "silent", "mininova-compute")

    code, out = run(conf, capsys, timeout=1)
    assert code == audit.EXIT_FINDINGS | audit.EXIT_NOT_AUDITED == 5
    assert found(out) == sorted([
        ("orphan-domain", conf.host, rowless, "no-live-row"),
        ("orphan-overlay", conf.host, stray_dir, "no-live-row"),
        ("orphan-allocation", conf.host, rowless, "no-live-row"),
        ("orphan-allocation", conf.host, stray_allocation, "no-live-row"),
        ("orphan-fixed-ip", None, rowless, "no-live-row"),
        ("usage-mismatch", conf.host, None, "used-differs-from-allocations"),
        ("orphan-row", "decommissioned", ghost, "host-gone"),
        ("orphan-row", conf.host, vanished, "domain-missing"),
    ])
    assert out["hosts"]["silent"]["status"] == "unreachable"
    assert out["hosts"][conf.host]["status"] == "audited"
    assert out["not_audited"] == ["silent"]
    assert out["summary"]["remaining"] == 8 and out["summary"]["hosts_unreachable"] == 1
    assert out["summary"]["hosts_not_audited"] == 1
    sql(db, "DELETE FROM services WHERE host = 'silent'")

    code, out = run(conf, capsys, fix=True)
    assert code == 0, out
    fixes = {(f["kind"], f["vm"]): f["fix"] for f in out["findings"]}
    assert fixes == {
        ("orphan-domain", rowless): "destroyed",
        ("orphan-overlay", stray_dir): "destroyed",
        ("orphan-allocation", rowless): "released",
        ("orphan-allocation", stray_allocation): "released",
        ("orphan-fixed-ip", rowless): "released",
        ("usage-mismatch", None): "recomputed",
        ("orphan-row", ghost): "soft-deleted",
        ("orphan-row", vanished): "error-marked",
    }
    assert out["summary"]["fixed"] == 8 and out["summary"]["remaining"] == 0

    code, out = run(conf, capsys)
    assert (code, out["findings"]) == (0, [])
    assert [d["id"] for d in manager.driver.list_instances()] == [keep]
    with db.transaction() as s:
        inst = db_api.instance_get(s, vanished)
        assert inst.vm_state == states.ERROR and "missing" in inst.fault
        assert db_api.instance_get(s, keep).vm_state == states.ACTIVE
        node = s.get(ComputeNode, conf.host)
        assert (node.vcpus_used, node.memory_mb_used, node.local_gb_used) == (2, 256, 2)
        assert s.get(Instance, ghost).deleted_at is not None


def test_audit_command_text_output_and_stuck_rows_remain(rpc_compute, db, conf, capsys):
    ConductorManager(db).service_heartbeat(CTXT, conf.host, "mininova-compute",
                                           {"vcpus": 4, "memory_mb": 4096, "local_gb": 50})
    with db.transaction() as s:
        stuck = db_api.instance_create(s, name="stuck", project_id="p", image_id="x",
                                       flavor_id="1", vcpus=1, memory_mb=64, root_gb=1,
                                       vm_state=states.BUILDING, task_state=states.SCHEDULING)
        stuck = stuck.id
    sql(db, "UPDATE instances SET updated_at = :t WHERE id = :i",
        t=audit.utcnow() - datetime.timedelta(hours=2), i=stuck)
    code = audit.audit_command(conf, argparse.Namespace(fix=True, json=False))
    lines = capsys.readouterr().out.splitlines()
    assert code == 1
    assert lines[0].startswith("stuck-row host=- vm=%s vm_state=building "
                               "task_state=scheduling age_s=" % stuck)
    assert lines[0].endswith(" reason=building fix=none:report-only")
    assert lines[1] == ("summary findings=1 fixed=0 remaining=1 stuck-row=1 hosts_audited=1 "
                        "hosts_unreachable=0 hosts_down=0 hosts_skipped=0 hosts_not_audited=0")
    code = audit.audit_command(conf, argparse.Namespace(fix=False, json=False,
                                                        stuck_after=3 * 3600))
    assert code == 0
    assert capsys.readouterr().out.strip() == (
        "summary findings=0 fixed=0 remaining=0 hosts_audited=1 hosts_unreachable=0 "
        "hosts_down=0 hosts_skipped=0 hosts_not_audited=0")


def old_host(db, conf):
    """A compute service whose last heartbeat is years old: down."""
    conf.set_override("transport_url", "memory://audit-%s" % uuid.uuid4().hex)
    ConductorManager(db).service_heartbeat(CTXT, "old", "mininova-compute")
    sql(db, "UPDATE services SET last_heartbeat = :t", t=datetime.datetime(2020, 1, 1))


def test_a_down_host_is_not_audited_and_fails_the_audit(db, conf, capsys):
    old_host(db, conf)
    code = audit.audit_command(conf, argparse.Namespace(fix=False, json=False, timeout=1))
    assert code == audit.EXIT_NOT_AUDITED
    assert capsys.readouterr().out.splitlines() == [
        "not-audited host=old reason=down last_heartbeat=2020-01-01T00:00:00",
        "summary findings=0 fixed=0 remaining=0 hosts_audited=0 hosts_unreachable=0 "
        "hosts_down=1 hosts_skipped=0 hosts_not_audited=1"]
    code, out = run(conf, capsys, timeout=1)
    assert code == audit.EXIT_NOT_AUDITED
    assert out["not_audited"] == ["old"]
    assert out["hosts"] == {"old": {"status": "down", "last_heartbeat": "2020-01-01T00:00:00",
                                    "skipped": False}}


def test_skip_down_excuses_a_down_host_and_still_lists_it(db, conf, capsys):
    old_host(db, conf)
    code = audit.audit_command(conf, argparse.Namespace(fix=False, json=False, timeout=1,
                                                        skip_down=True))
    assert code == 0
    assert capsys.readouterr().out.splitlines() == [
        "not-audited host=old reason=down last_heartbeat=2020-01-01T00:00:00 "
        "skipped=--skip-down",
        "summary findings=0 fixed=0 remaining=0 hosts_audited=0 hosts_unreachable=0 "
        "hosts_down=1 hosts_skipped=1 hosts_not_audited=0"]
    code, out = run(conf, capsys, timeout=1, skip_down=True)
    assert (code, out["not_audited"], out["hosts"]["old"]["skipped"]) == (0, [], True)


def test_skip_down_does_not_excuse_a_host_that_heartbeats_but_does_not_answer(db, conf,
                                                                              capsys):
    conf.set_override("transport_url", "memory://audit-%s" % uuid.uuid4().hex)
    ConductorManager(db).service_heartbeat(CTXT, "silent", "mininova-compute")
    code, out = run(conf, capsys, timeout=1, skip_down=True)
    assert code == audit.EXIT_NOT_AUDITED
    assert out["not_audited"] == ["silent"]
    assert out["hosts"]["silent"]["status"] == "unreachable"
    assert "audit_report" in out["hosts"]["silent"]["error"]  # why: no reply


def test_manage_audit_passes_skip_down_and_returns_the_exit_status(db, conf, tmp_path,
                                                                   capsys):
    from nova_manage import cmd as manage
    old_host(db, conf)
    path = tmp_path / "manage.conf"
    path.write_text("[DEFAULT]\nstate_path = %s\ntransport_url = %s\n"
                    % (conf.state_path, conf.transport_url))
    argv = ["--config-file", str(path), "audit", "--timeout", "1"]
    assert manage.main(argv) == audit.EXIT_NOT_AUDITED
    assert manage.main(argv + ["--skip-down"]) == 0
    out = capsys.readouterr().out
    assert "not-audited host=old reason=down" in out and "skipped=--skip-down" in out
