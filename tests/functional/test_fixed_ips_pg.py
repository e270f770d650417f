"""Fixed IPs on PostgreSQL, the real path: concurrent allocators (as several
conductors serving many hosts) never hand out one address twice, also while
others release and reuse addresses; an allocation racing the VM's delete
leaves no address behind."""
import concurrent.futures
import threading
import uuid

import pytest

from common import context, exception, states
from common.db import api as db_api
from common.db import fixed_ips
from common.fixed_networks import FixedNetwork
from nova_conductor.manager import ConductorManager

pytestmark = pytest.mark.real_services("postgresql")

NET = FixedNetwork(name="pg-net", cidr="10.20.0.0/24", first="10.20.0.10",
                   last="10.20.0.99", gateway="10.20.0.1")


def allocate(db, instance_id, host):
    with db.transaction() as s:
        return fixed_ips.allocate(s, NET, instance_id, host)


def test_concurrent_allocations_are_unique_until_the_range_is_used_up(pg_db):
    ids = [str(uuid.uuid4()) for _ in range(120)]  # 90 addresses in the range
    start = threading.Barrier(16)

    def work(chunk):
        start.wait(timeout=120)
        got = []
        for i, instance_id in enumerate(chunk):
            try:
                got.append((instance_id, allocate(pg_db, instance_id, "h%d" % (i % 3))))
            except exception.NoMoreFixedIps:
                got.append((instance_id, None))
        return got

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = [r for part in pool.map(work, [ids[k::16] for k in range(16)]) for r in part]
    given = [address for _, address in results if address is not None]
    assert len(given) == 90 and len(set(given)) == 90
    with pg_db.transaction() as s:
        assert fixed_ips.held(s, NET.name) == {a: i for i, a in results if a is not None}


def test_release_and_reuse_under_concurrency(pg_db):
    holders = [str(uuid.uuid4()) for _ in range(90)]
    for instance_id in holders:
        allocate(pg_db, instance_id, "h1")
    newcomers = [str(uuid.uuid4()) for _ in range(45)]
    start = threading.Barrier(12)

    def release(instance_id):
        with pg_db.transaction() as s:
            fixed_ips.release_instance(s, instance_id)

    def work(k):
        # Each allocator frees 4 addresses before taking at most 4: at any
        # moment fewer are taken than freed, so every allocation finds one.
        start.wait(timeout=120)
        for instance_id in holders[k::12][:4]:
            release(instance_id)
        return [allocate(pg_db, instance_id, "h2") for instance_id in newcomers[k::12]]

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        given = [a for part in pool.map(work, range(12)) for a in part]
    assert len(given) == 45 and len(set(given)) == 45
    with pg_db.transaction() as s:
        held = fixed_ips.held(s, NET.name)
    assert len(held) == 90 - 48 + 45
    assert set(newcomers) <= set(held.values())


def test_an_allocation_racing_a_delete_leaves_no_address_behind(pg_db):
    """The conductor locks the VM's row before allocating: a delete either
    comes first (nothing is allocated) or after (its release finds the address)."""
    conductor = ConductorManager(pg_db)
    ids = []
    with pg_db.transaction() as s:
        for i in range(40):
            ids.append(db_api.instance_create(
                s, name="race-%d" % i, project_id="p", image_id="i", flavor_id="1", vcpus=1,
                memory_mb=64, root_gb=1, vm_state=states.BUILDING,
                task_state=states.SPAWNING, host="h1").id)
    start = threading.Barrier(16)

    def allocate_one(instance_id):
        return conductor.fixed_ip_allocate(context.RequestContext(), instance_id, "h1",
                                           NET.to_dict())

    def delete_one(instance_id):
        with pg_db.transaction() as s:
            return db_api.instance_soft_delete(s, instance_id)

    def work(k):
        start.wait(timeout=120)
        for instance_id in ids[k // 2::8]:
            (allocate_one if k % 2 == 0 else delete_one)(instance_id)

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(work, range(16)))
    with pg_db.transaction() as s:
        assert fixed_ips.held(s, NET.name) == {}
        assert db_api.instance_list(s) == []
