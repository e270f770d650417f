import concurrent.futures
import datetime

import pytest

from common import context, states
from common.db import allocations
from common.db import api as db_api
from common.db.allocations import Resources
from common.db.models import utcnow
from nova_conductor.manager import ConductorManager
from tests.builds import Builds

CTXT = context.RequestContext(project_id="p")
RATIOS = (16.0, 1.5, 1.0)


def add_host(db, host, vcpus=4, memory_mb=4096, local_gb=100, age=0, disabled=False):
    ConductorManager(db).service_heartbeat(CTXT, host, "mininova-compute", {
        "vcpus": vcpus, "memory_mb": memory_mb, "local_gb": local_gb})
    with db.transaction() as s:
        svc = [x for x in db_api.service_list(s) if x.host == host][0]
        svc.last_heartbeat = utcnow() - datetime.timedelta(seconds=age)
        svc.disabled = disabled


def add_vm(db, name="vm", memory_mb=128, vcpus=1, root_gb=1):
    with db.transaction() as s:
        image = db_api.image_create(s, name="img-" + name, size=1, checksum="0" * 64, min_ram=0,
                                    min_disk=0, location="/nowhere", disk_format="qcow2",
                                    status="active")
        inst = db_api.instance_create(s, name=name, project_id="p", image_id=image.id,
                                      flavor_id="1", vcpus=vcpus, memory_mb=memory_mb,
                                      root_gb=root_gb, vm_state=states.BUILDING,
                                      task_state=states.SCHEDULING)
    return inst.id


def get(db, instance_id):
    with db.transaction() as s:
        return db_api.instance_get(s, instance_id)


@pytest.fixture
def builds(conf, db):
    return Builds(db, conf)


def test_places_on_host_with_most_free_ram_and_claims(builds, db):
    add_host(db, "small", memory_mb=1024)
    add_host(db, "big", memory_mb=8192)
    vm = add_vm(db)
    builds.build(CTXT, vm)
    inst = get(db, vm)
    assert inst.host == "big" and inst.task_state == states.SPAWNING
    (method, args, _), = builds.compute_rpcapi.calls
    assert method == "build_instance" and args[0] == "big" and args[1]["id"] == vm
    with db.transaction() as s:
        assert allocations.of_consumer(s, vm)[0].memory_mb == 128


def test_redelivered_request_does_not_claim_twice(builds, db):
    add_host(db, "h1")
    vm = add_vm(db)
    builds.build(CTXT, vm)
    builds.build(CTXT, vm)  # at-least-once: the same message again
    assert [c[0] for c in builds.compute_rpcapi.calls] == ["build_instance"] * 2
    with db.transaction() as s:
        node = [n for _, n in db_api.compute_hosts(s)][0]
        assert node.memory_mb_used == 128


def test_no_valid_host_explains_each_filter(builds, db):
    add_host(db, "down", age=3600)
    add_host(db, "off", disabled=True)
    add_host(db, "tiny", memory_mb=1024)
    vm = add_vm(db, memory_mb=4096)
    builds.build(CTXT, vm)
    inst = get(db, vm)
    assert inst.vm_state == states.ERROR and inst.task_state is None
    assert inst.fault.startswith("No valid host was found. 3 hosts: ")
    assert "ComputeFilter removed 2 (disabled, down)" in inst.fault
    assert "RamFilter removed 1 (need 4096 MB, max free 1536 MB)" in inst.fault
    assert builds.compute_rpcapi.calls == []


def test_no_hosts_at_all(builds, db):
    vm = add_vm(db)
    builds.build(CTXT, vm)
    assert "0 hosts" in get(db, vm).fault


def test_deleted_vm_is_not_scheduled(builds, db):
    add_host(db, "h1")
    vm = add_vm(db)
    with db.transaction() as s:
        db_api.instance_soft_delete(s, vm)
    builds.build(CTXT, vm)
    assert builds.compute_rpcapi.calls == []


def test_concurrent_claims_never_overcommit(db):
    add_host(db, "h1", vcpus=1, memory_mb=1000, local_gb=100)
    # 1000 MB * 1.5 = 1500 MB: room for exactly eleven 128 MB VMs.
    def claim(i):
        with db.transaction() as s:
            return allocations.allocate(s, "vm-%d" % i, "h1", Resources(1, 128, 1), RATIOS)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(claim, range(30)))
    assert sum(1 for r in results if r) == 11 and sorted(filter(None, results)) == list(range(1, 12))
    with db.transaction() as s:
        node = [n for _, n in db_api.compute_hosts(s)][0]
        assert node.memory_mb_used == 11 * 128
        for i in range(30):
            allocations.release(s, "vm-%d" % i)
    with db.transaction() as s:
        node = [n for _, n in db_api.compute_hosts(s)][0]
        assert (node.vcpus_used, node.memory_mb_used, node.local_gb_used) == (0, 0, 0)


def test_conductor_reports_are_conditional(db):
    add_host(db, "h1")
    vm = add_vm(db)
    conductor = ConductorManager(db)
    with db.transaction() as s:
        assert allocations.allocate(s, vm, "h1", Resources(1, 128, 1), RATIOS)
        db_api.instance_update_if(s, vm, {"host": "h1", "task_state": states.SPAWNING})
    # A report from a host that does not own the VM changes nothing.
    assert not conductor.instance_spawned(CTXT, vm, "other", "running")
    assert conductor.instance_spawned(CTXT, vm, "h1", "running")
    assert get(db, vm).vm_state == states.ACTIVE
    # A late duplicate of a failure report cannot undo ACTIVE.
    assert not conductor.instance_build_failed(CTXT, vm, "h1", "boom")
    assert get(db, vm).vm_state == states.ACTIVE
    assert conductor.instance_get(CTXT, vm)["host"] == "h1"
    assert conductor.instance_terminated(CTXT, vm, "h1")
    assert conductor.instance_get(CTXT, vm) is None
    with db.transaction() as s:
        assert not allocations.of_consumer(s, vm)


def test_build_failure_releases_claim(db):
    add_host(db, "h1")
    vm = add_vm(db)
    with db.transaction() as s:
        allocations.allocate(s, vm, "h1", Resources(1, 128, 1), RATIOS)
        db_api.instance_update_if(s, vm, {"host": "h1", "task_state": states.SPAWNING})
    assert ConductorManager(db).instance_build_failed(CTXT, vm, "h1", "disk exploded")
    inst = get(db, vm)
    assert inst.vm_state == states.ERROR and inst.fault == "disk exploded"
    with db.transaction() as s:
        assert not allocations.of_consumer(s, vm)


def group(db, policy):
    from common.db import hosts as db_hosts
    with db.transaction() as s:
        return db_hosts.group_create(s, "p", "g-" + policy, policy).id


def add_member(db, name, group_id):
    vm = add_vm(db, name)
    with db.transaction() as s:
        db_api.instance_update_if(s, vm, {"group_id": group_id})
    return vm


def test_pack_weigher(conf, db, recorder):
    conf.set_override("ram_weight_multiplier", -1.0, group="scheduler")
    add_host(db, "small", memory_mb=2048)
    add_host(db, "big", memory_mb=8192)
    sched = Builds(db, conf)
    vm = add_vm(db)
    sched.build(CTXT, vm)
    assert get(db, vm).host == "small"


def test_anti_affinity_sequential_and_exhausted(builds, db):
    for h in ("h1", "h2"):
        add_host(db, h)
    gid = group(db, "anti-affinity")
    vms = [add_member(db, "m%d" % i, gid) for i in range(3)]
    for vm in vms:
        builds.build(CTXT, vm)
    hosts = [get(db, vm).host for vm in vms[:2]]
    assert sorted(hosts) == ["h1", "h2"]
    third = get(db, vms[2])
    assert third.vm_state == states.ERROR
    assert "ServerGroupAntiAffinityFilter removed 2" in third.fault


def test_anti_affinity_concurrent_burst_lands_on_distinct_hosts(conf, db, recorder):
    for i in range(4):
        add_host(db, "h%d" % i)
    gid = group(db, "anti-affinity")
    vms = [add_member(db, "b%d" % i, gid) for i in range(4)]
    schedulers = [Builds(db, conf) for _ in range(2)]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: schedulers[i % 2].build(CTXT, vms[i]), range(4)))
    hosts = [get(db, vm).host for vm in vms]
    assert None not in hosts and len(set(hosts)) == 4, hosts


def test_affinity_keeps_members_together(builds, db):
    for h in ("h1", "h2", "h3"):
        add_host(db, h)
    gid = group(db, "affinity")
    vms = [add_member(db, "a%d" % i, gid) for i in range(3)]
    for vm in vms:
        builds.build(CTXT, vm)
    assert len({get(db, vm).host for vm in vms}) == 1


def test_reschedule_then_fault_lists_every_host(conf, db, recorder):
    for h in ("h1", "h2", "h3"):
        add_host(db, h)
    compute = recorder()
    sched = Builds(db, conf, compute_rpcapi=compute)
    conductor = ConductorManager(db, sched.task, max_attempts=3)
    vm = add_vm(db)
    sched.build(CTXT, vm)
    tried = []
    for _ in range(3):
        host = get(db, vm).host
        tried.append(host)
        assert conductor.instance_build_failed(CTXT, vm, host, "boom on %s" % host)
    assert sorted(tried) == ["h1", "h2", "h3"]
    inst = get(db, vm)
    assert inst.vm_state == states.ERROR
    assert inst.fault.startswith("Build failed on 3 hosts: ")
    for h in tried:
        assert "%s: boom on %s" % (h, h) in inst.fault
    with db.transaction() as s:
        assert not allocations.of_consumer(s, vm)
        assert all(n.memory_mb_used == 0 for _, n in db_api.compute_hosts(s))


def test_a_fresh_placement_carries_the_guest_fields_a_repeated_answer_does_not(builds, db):
    """The build of a fresh placement skips its instance_get (compute 1.8
    ``placed``); one answered again reads the VM first, as it may be old."""
    from common import payloads
    from common.db import instance_metadata
    add_host(db, "h1")
    vm = add_vm(db)
    with db.transaction() as s:
        instance_metadata.replace(s, vm, {"role": "web"})
    builds.build(CTXT, vm)
    builds.build(CTXT, vm)  # redelivered: answered again
    (_, fresh, _), (_, again, _) = builds.compute_rpcapi.calls
    assert set(payloads.GUEST_FIELDS) <= set(fresh[1]) and fresh[1]["metadata"] == {"role": "web"}
    assert (fresh[1]["host"], fresh[1]["task_state"]) == ("h1", states.SPAWNING)
    assert not set(payloads.GUEST_FIELDS) & set(again[1])


def test_action_id_travels_from_scheduler_to_conductor(builds, db):
    """The scheduler finds the create's action once and sends its id with the
    build; the report carries it back and the conductor writes by id."""
    from common.db import actions
    add_host(db, "h1")
    vm = add_vm(db)
    with db.transaction() as s:
        action_id = actions.action_start(s, vm, CTXT.request_id, "create", "p").id
    builds.build(CTXT, vm)
    (method, args, kwargs), = builds.compute_rpcapi.calls
    assert method == "build_instance" and kwargs["action_id"] == action_id
    step = {"event": "domain started", "host": "h1", "start_time": "2030-01-01T00:00:00Z",
            "finish_time": "2030-01-01T00:00:01.5Z", "result": "success", "details": None}
    conductor = ConductorManager(db)
    assert conductor.instance_spawned(CTXT, vm, "h1", "running", [step], action_id=action_id)
    assert not conductor.instance_spawned(CTXT, vm, "h1", "running", [step], action_id=action_id)
    with db.transaction() as s:
        action, events = actions.action_get(s, vm, CTXT.request_id)
        assert action.result == "success" and action.finish_time >= action.start_time
        assert sorted(e.event for e in events) == ["domain started", "reported", "scheduled"]
    assert get(db, vm).vm_state == states.ACTIVE


def test_burst_in_one_process_spreads_and_stops_at_capacity(conf, db, recorder):
    """16 concurrent placements in one scheduler: each choice counts the ones
    before it in memory (no DB round trip under the lock), so the burst
    spreads evenly, and the DB claim stops it at capacity."""
    for h in ("h1", "h2"):
        add_host(db, h, memory_mb=1024)  # * 1.5 = 12 VMs of 128 MB each
    sched = Builds(db, conf)
    vms = [add_vm(db, "b%d" % i) for i in range(26)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda vm: sched.build(CTXT, vm), vms))
    placed = [get(db, vm) for vm in vms]
    hosts = [i.host for i in placed if i.vm_state != states.ERROR]
    assert sorted(hosts.count(h) for h in ("h1", "h2")) == [12, 12]
    assert sum(1 for i in placed if i.vm_state == states.ERROR) == 2
    with db.transaction() as s:
        assert all(n.memory_mb_used == 1536 for _, n in db_api.compute_hosts(s))


def test_host_cache_count_each_claim_once(db):
    """A reservation shows on top of a snapshot that does not contain it, not
    on one whose host generation shows its claim (no double count), and a
    cancelled one gives its room back."""
    from nova_scheduler.host_state import HostStateCache
    add_host(db, "h1")
    cache = HostStateCache(db)
    cache.refresh_if_needed()

    def used():
        with cache.lock:
            return {h.host: h.memory_mb_used for h in cache.hosts()}
    with cache.lock:
        kept = cache.reserve("h1", 1, 128, 1)
        dropped = cache.reserve("h1", 1, 256, 1)
    assert used() == {"h1": 384}
    dropped.cancel()
    assert used() == {"h1": 128}
    with db.transaction() as s:  # the claim of ``kept``, as the scheduler makes it
        generation = allocations.allocate(s, "vm-kept", "h1", Resources(1, 128, 1), RATIOS)
    kept.claimed(generation)
    assert used() == {"h1": 128}  # the old snapshot, plus the claim
    cache.mark_stale()
    cache.refresh_if_needed()
    assert used() == {"h1": 128}  # the new snapshot has it; not added again


def test_a_build_interrupted_by_its_hosts_restart_may_go_back_there(conf, db, recorder):
    """One host: a build its restart cut short is placed there again (a
    failed build is not); each interruption counts as an attempt, so a build
    that keeps crashing its host ends in ERROR."""
    add_host(db, "h1")
    sched = Builds(db, conf)
    conductor = ConductorManager(db, sched.task, max_attempts=3)
    vm = add_vm(db)
    sched.build(CTXT, vm)
    for attempt in (1, 2):
        assert conductor.instance_build_interrupted(CTXT, vm, "h1", "restart %d" % attempt)
        inst = get(db, vm)
        assert (inst.host, inst.task_state) == ("h1", states.SPAWNING), inst.fault
        with db.transaction() as s:
            assert allocations.of_consumer(s, vm)[0].host == "h1"
    assert conductor.instance_build_interrupted(CTXT, vm, "h1", "restart 3")
    inst = get(db, vm)
    assert inst.vm_state == states.ERROR and "h1: restart 3" in inst.fault

    failed = add_vm(db, "failed")
    sched.build(CTXT, failed)
    assert conductor.instance_build_failed(CTXT, failed, "h1", "disk exploded")
    inst = get(db, failed)
    assert inst.vm_state == states.ERROR and "RetryFilter removed 1" in inst.fault
    assert "Earlier attempts: h1: disk exploded" in inst.fault


def test_a_vm_back_in_scheduling_sees_the_hosts_as_of_then(conf, db, recorder):
    """The scheduler's snapshot of the hosts serves requests made before it
    was read; a VM that came back to 'scheduling' after it (a build handed
    back by a host that restarted and reported in just before) reads them
    again, and finds that host up."""
    add_host(db, "h1", age=3600)  # down: killed an hour ago
    sched = Builds(db, conf)
    sched.host_cache.max_age = 3600  # only a newer request refreshes the snapshot
    conductor = ConductorManager(db, sched.task, max_attempts=3)
    interrupted = add_vm(db, "interrupted")  # created (and placed) before the snapshot
    with db.transaction() as s:
        db_api.instance_update_if(s, interrupted, {"host": "h1",
                                                   "task_state": states.SPAWNING})
    early = add_vm(db, "early")
    sched.build(CTXT, early)  # reads the snapshot: h1 down
    assert "ComputeFilter removed 1 (down)" in get(db, early).fault
    # h1 restarts: reports in, then hands back the build it had under way.
    conductor.service_heartbeat(CTXT, "h1", "mininova-compute",
                                {"vcpus": 4, "memory_mb": 4096, "local_gb": 100})
    assert conductor.instance_build_interrupted(CTXT, interrupted, "h1", "restarted")
    inst = get(db, interrupted)
    assert (inst.host, inst.task_state) == ("h1", states.SPAWNING), inst.fault
