"""Allocations keyed by (consumer, host): a VM and its migration hold a
source and a destination at once, handing an allocation from one consumer to
another keeps every host's usage, and releasing frees exactly what was held;
the hosts' ``*_used`` stay the sums of their allocations throughout."""
import pytest
import sqlalchemy as sa

from common import states
from common.db import allocations, vm_migrations
from common.db import api as db_api
from common.db.allocations import Resources
from tests.unit.test_scheduler import RATIOS, add_host, add_vm

SMALL = Resources(1, 128, 1)
LARGE = Resources(2, 512, 2)


def usage(db):
    """{host: Resources} as the nodes say, checked against the allocations."""
    with db.transaction() as s:
        nodes = {n.host: Resources(n.vcpus_used, n.memory_mb_used, n.local_gb_used)
                 for _, n in db_api.compute_hosts(s)}
        assert allocations.usage_by_host(s, sorted(nodes)) == nodes
    return nodes


def generations(db):
    with db.transaction() as s:
        return {n.host: n.generation for _, n in db_api.compute_hosts(s)}


@pytest.fixture
def two_hosts(db):
    add_host(db, "src")
    add_host(db, "dst")


def test_a_consumer_holds_a_second_host_while_the_first_is_held(db, two_hosts):
    with db.transaction() as s:
        assert allocations.allocate(s, "vm", "src", SMALL, RATIOS)
        assert allocations.allocate(s, "vm", "dst", LARGE, RATIOS)
        assert sorted((a.host, a.memory_mb) for a in allocations.of_consumer(s, "vm")) == [
            ("dst", 512), ("src", 128)]
        assert allocations.on_host(s, "vm", "dst").vcpus == 2
    assert usage(db) == {"src": SMALL, "dst": LARGE}


def test_a_second_host_is_refused_without_room_and_the_first_kept(db, two_hosts):
    with db.transaction() as s:
        assert allocations.allocate(s, "vm", "src", SMALL, RATIOS)
        assert allocations.allocate(s, "vm", "dst", Resources(1, 10 ** 6, 1), RATIOS) is None
        assert [a.host for a in allocations.of_consumer(s, "vm")] == ["src"]
    assert usage(db) == {"src": SMALL, "dst": Resources(0, 0, 0)}


def test_moving_allocations_keeps_usage_and_generations(db, two_hosts):
    """A cold migration's first step: the migration record takes over the
    source allocation, then the VM allocates the destination."""
    with db.transaction() as s:
        allocations.allocate(s, "vm", "src", SMALL, RATIOS)
        migration = vm_migrations.create(s, "vm", "migration", "src", "dst")
    before = generations(db)
    with db.transaction() as s:
        assert allocations.move_allocations(s, "vm", migration) == 1
        assert allocations.of_consumer(s, "vm") == []
        assert [a.host for a in allocations.of_consumer(s, migration)] == ["src"]
    assert generations(db) == before
    with db.transaction() as s:
        assert allocations.allocate(s, "vm", "dst", SMALL, RATIOS)
    assert usage(db) == {"src": SMALL, "dst": SMALL}
    with db.transaction() as s:  # confirmed: the source is freed
        assert allocations.release(s, migration) == 1
    assert usage(db) == {"src": Resources(0, 0, 0), "dst": SMALL}


def test_release_on_host_frees_only_that_host(db, two_hosts):
    with db.transaction() as s:
        allocations.allocate(s, "vm", "src", SMALL, RATIOS)
        allocations.allocate(s, "vm", "dst", LARGE, RATIOS)
        assert allocations.release_on_host(s, "vm", "dst")
        assert not allocations.release_on_host(s, "vm", "dst")
    assert usage(db) == {"src": SMALL, "dst": Resources(0, 0, 0)}


def test_release_frees_every_host_of_a_consumer_once(db, two_hosts):
    with db.transaction() as s:
        allocations.allocate(s, "vm", "src", SMALL, RATIOS)
        allocations.allocate(s, "vm", "dst", LARGE, RATIOS)
    start = generations(db)
    with db.transaction() as s:
        assert allocations.release(s, "vm") == 2
        assert allocations.release(s, "vm") == 0
    assert usage(db) == {"src": Resources(0, 0, 0), "dst": Resources(0, 0, 0)}
    assert generations(db) == {h: g + 1 for h, g in start.items()}


def test_deleting_a_vm_frees_what_it_and_its_migration_hold(db, two_hosts):
    vm = add_vm(db)
    with db.transaction() as s:
        allocations.allocate(s, vm, "src", SMALL, RATIOS)
        migration = vm_migrations.create(s, vm, "resize", "src", "dst")
        allocations.move_allocations(s, vm, migration)
        allocations.allocate(s, vm, "dst", LARGE, RATIOS)
        allocations.allocate(s, "other", "dst", SMALL, RATIOS)
        assert db_api.instance_soft_delete(s, vm)
    assert usage(db) == {"src": Resources(0, 0, 0), "dst": SMALL}


def test_one_consumer_cannot_hold_one_host_twice(db, two_hosts):
    with pytest.raises(sa.exc.IntegrityError):
        with db.transaction() as s:
            allocations.allocate(s, "vm", "src", SMALL, RATIOS)
            allocations.allocate(s, "vm", "src", SMALL, RATIOS)
    assert usage(db)["src"] == Resources(0, 0, 0)  # the whole transaction rolled back


def test_migrations_in_progress_by_instance_host_and_uuid(db):
    with db.transaction() as s:
        ended = vm_migrations.create(s, "vm", "migration", "a", "b")
        assert vm_migrations.update_if(s, ended, {"status": "confirmed"},
                                       expected_status="pre-migrating")
        assert not vm_migrations.update_if(s, ended, {"status": "migrating"},
                                           expected_status="pre-migrating")
        live = vm_migrations.create(s, "vm", "live-migration", "b", "c", request_id="req-1")
        assert vm_migrations.in_progress_for_instance(s, "vm").uuid == live
        assert [m.uuid for m in vm_migrations.in_progress_for_host(s, "c")] == [live]
        assert vm_migrations.in_progress_for_host(s, "a") == []
        assert vm_migrations.in_progress_by_uuid(s, ended) is None
        assert vm_migrations.as_dict(vm_migrations.in_progress_by_uuid(s, live)) == {
            "uuid": live, "source_host": "b", "dest_host": "c", "type": "live-migration",
            "status": "pre-migrating"}
        assert vm_migrations.get(s, live).request_id == "req-1"
        assert set(vm_migrations.in_progress_by_instance(s)) == {"vm"}
    assert "confirmed" in states.MIGRATION_ENDED


def test_an_unknown_migration_type_is_refused(db):
    with db.transaction() as s, pytest.raises(ValueError):
        vm_migrations.create(s, "vm", "teleport", "a")
