"""The scheduler's claims (allocations of a VM on its host): each resource
bounds a claim, the host generation moves with every claim and release, and
the scheduler's in-memory view (HostStateCache) never keeps a reservation a claim
did not make, never counts one twice, and is read again after a claim lost in
the DB."""
import pytest

from common import states
from common.db import allocations
from common.db import api as db_api
from common.db.allocations import Resources
from nova_scheduler.host_state import HostStateCache
from tests.builds import Builds
from tests.unit.test_scheduler import CTXT, RATIOS, add_host, add_vm, get

# add_host defaults with RATIOS (16, 1.5, 1.0): room for 64 vCPUs, 6144 MB, 100 GB.
ROOM = {"vcpus": 64, "memory_mb": 6144, "disk_gb": 100}
ONE = {"vcpus": 1, "memory_mb": 1, "disk_gb": 1}


def node(db, host="h1"):
    with db.transaction() as s:
        return next(n for _, n in db_api.compute_hosts(s) if n.host == host)


def claim(db, instance_id, host="h1", **need):
    need = dict(ONE, **need)
    with db.transaction() as s:
        return allocations.allocate(s, instance_id, host, Resources(**need), RATIOS)


@pytest.mark.parametrize("resource", ["vcpus", "memory_mb", "disk_gb"])
def test_each_resource_bounds_a_claim(db, resource):
    add_host(db, "h1")
    assert not claim(db, "too-big", **{resource: ROOM[resource] + 1})
    assert claim(db, "fits", **{resource: ROOM[resource]})
    assert not claim(db, "one-more", **{resource: 1})  # that resource is full now
    n = node(db)
    assert (n.vcpus_used, n.memory_mb_used, n.local_gb_used) == tuple(
        ROOM[r] if r == resource else 1 for r in ("vcpus", "memory_mb", "disk_gb"))


def test_every_claim_and_release_moves_the_host_generation(db):
    """The contract of compute_nodes.generation (migration 0006), as
    Placement's resource provider generation: every change moves it on."""
    add_host(db, "h1")
    start = node(db).generation
    assert claim(db, "a") == start + 1
    assert not claim(db, "b", memory_mb=10 ** 6)  # refused: nothing changed
    assert node(db).generation == start + 1
    with db.transaction() as s:
        assert allocations.release(s, "a")
        assert not allocations.release(s, "a")  # released already: nothing changed
    assert node(db).generation == start + 2


def memory_in_view(sched):
    """What this scheduler's view counts as used on each host."""
    with sched.host_cache.lock:
        return {h.host: h.memory_mb_used for h in sched.host_cache.hosts()}


def memory_in_db(db):
    with db.transaction() as s:
        return {n.host: n.memory_mb_used for _, n in db_api.compute_hosts(s)}


@pytest.fixture
def sched(conf, db, recorder):
    """A scheduler whose view of the hosts is read when the test says so
    (``refresh``), not when a second has passed."""
    s = Builds(db, conf)
    s.host_cache = HostStateCache(db, max_age=3600)
    s.refresh = lambda: (s.host_cache.mark_stale(), s.host_cache.refresh_if_needed())
    return s


def test_a_placed_vm_is_counted_once_in_the_view(sched, db):
    add_host(db, "h1")
    vm = add_vm(db)
    sched.build(CTXT, vm)
    assert get(db, vm).host == "h1"
    assert memory_in_view(sched) == {"h1": 128}   # the old snapshot plus the reservation
    sched.refresh()
    assert memory_in_view(sched) == memory_in_db(db) == {"h1": 128}  # not twice


def test_a_claim_lost_in_the_db_leaves_no_reservation(sched, db):
    add_host(db, "h1", memory_mb=1024)            # room: 1536 MB
    vm = add_vm(db, memory_mb=1024)
    sched.refresh()                               # the view: h1 empty
    assert claim(db, "intruder", memory_mb=1024)  # another scheduler takes the room
    sched.build(CTXT, vm)
    assert get(db, vm).vm_state == states.ERROR   # no valid host
    assert memory_in_view(sched) == memory_in_db(db) == {"h1": 1024}


def test_after_a_lost_claim_the_hosts_are_read_again(sched, db):
    """Room freed elsewhere since the view was read is found."""
    add_host(db, "h1", memory_mb=1024)
    add_host(db, "h2", memory_mb=1024)
    assert claim(db, "old", "h2", memory_mb=1024)  # h2: 512 MB left
    vm = add_vm(db, memory_mb=1024)
    sched.refresh()                                # the view: only h1 has room
    assert claim(db, "intruder", "h1", memory_mb=1024)
    with db.transaction() as s:
        allocations.release(s, "old")             # h2 has room again
    sched.build(CTXT, vm)
    inst = get(db, vm)
    assert (inst.host, inst.task_state) == ("h2", states.SPAWNING)
    assert [args[0] for _, args, _ in sched.compute_rpcapi.calls] == ["h2"]


class GivenUpWhileChoosing(HostStateCache):
    """While the scheduler chooses a host, the VM stops waiting for one:
    ``meanwhile(instance_id)`` changes it (the watchdog, a delete)."""
    meanwhile = staticmethod(lambda: None)

    def reserve(self, *args):
        self.meanwhile()
        return super().reserve(*args)


def give_up(db, vm):  # the watchdog's build_timeout
    with db.transaction() as s:
        db_api.instance_update_if(s, vm, {"vm_state": states.ERROR, "task_state": None,
                                          "fault": "Build timed out"})


def delete(db, vm):  # the API's delete of a VM on no host
    with db.transaction() as s:
        db_api.instance_soft_delete(s, vm, expected_host=None)


@pytest.mark.parametrize("meanwhile", [give_up, delete])
def test_a_vm_that_stops_waiting_is_not_claimed(sched, db, meanwhile):
    add_host(db, "h1")
    vm = add_vm(db)
    sched.host_cache = GivenUpWhileChoosing(db, max_age=3600)
    sched.host_cache.meanwhile = lambda: meanwhile(db, vm)
    sched.build(CTXT, vm)
    assert sched.compute_rpcapi.calls == []
    with db.transaction() as s:
        assert not allocations.of_consumer(s, vm)
        rows = {i.id: i for i in db_api.instance_list(s)}
    if vm in rows:
        assert (rows[vm].vm_state, rows[vm].task_state, rows[vm].host) == (
            states.ERROR, None, None)
    assert memory_in_view(sched) == memory_in_db(db) == {"h1": 0}
