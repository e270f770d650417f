"""Fixed IPs allocated in the database: each address once per network, one
per VM, idempotent, the longest-free address reused last, released on delete;
concurrent allocators on SQLite (PostgreSQL: tests/functional/test_fixed_ips_pg.py)."""
import concurrent.futures
import threading
import uuid

import pytest
import sqlalchemy as sa

from common import config, exception, states
from common.db import api as db_api
from common.db import fixed_ips, migration
from common.fixed_networks import FixedNetwork

NET = FixedNetwork(name="mininova", cidr="192.0.2.0/24", first="192.0.2.1",
                   last="192.0.2.5", gateway="192.0.2.1", dns=("192.0.2.1",))


def allocate(db, instance_id, network=NET, host="h1"):
    with db.transaction() as s:
        return fixed_ips.allocate(s, network, instance_id, host)


def test_addresses_come_from_the_range_without_the_gateway(db):
    assert [allocate(db, "vm-%d" % i) for i in range(4)] == [
        "192.0.2.2", "192.0.2.3", "192.0.2.4", "192.0.2.5"]
    with pytest.raises(exception.NoMoreFixedIps):
        allocate(db, "vm-x")


def test_allocation_is_idempotent_per_vm(db):
    first = allocate(db, "vm-1")
    assert allocate(db, "vm-1", host="h2") == first
    with db.transaction() as s:
        assert fixed_ips.held(s) == {first: "vm-1"}


def test_networks_are_separate_pools(db):
    other = FixedNetwork(name="other", cidr="192.0.2.0/24", first="192.0.2.1",
                         last="192.0.2.5", gateway="192.0.2.1")
    assert allocate(db, "vm-1") == allocate(db, "vm-2", network=other) == "192.0.2.2"
    assert allocate(db, "vm-1", network=other) == "192.0.2.3"


def test_released_addresses_come_back_longest_free_first(db):
    for i in range(4):
        allocate(db, "vm-%d" % i)
    with db.transaction() as s:
        assert fixed_ips.release_instance(s, "vm-2") == [("mininova", "192.0.2.4")]
    with db.transaction() as s:
        assert fixed_ips.release_instance(s, "vm-0") == [("mininova", "192.0.2.2")]
        assert fixed_ips.release_instance(s, "vm-0") == []  # idempotent
    assert allocate(db, "vm-a") == "192.0.2.4"  # free the longest
    assert allocate(db, "vm-b") == "192.0.2.2"
    with pytest.raises(exception.NoMoreFixedIps):
        allocate(db, "vm-c")


def test_never_used_addresses_go_before_released_ones(db):
    allocate(db, "vm-1")
    with db.transaction() as s:
        fixed_ips.release_instance(s, "vm-1")
    assert allocate(db, "vm-2") == "192.0.2.3"


def test_soft_delete_releases_the_address(db):
    with db.transaction() as s:
        inst = db_api.instance_create(s, name="v", project_id="p", image_id="i", flavor_id="1",
                                      vcpus=1, memory_mb=64, root_gb=1,
                                      vm_state=states.ACTIVE, host="h1")
    address = allocate(db, inst.id)
    with db.transaction() as s:
        assert db_api.instance_soft_delete(s, inst.id)
    with db.transaction() as s:
        assert fixed_ips.held(s) == {}
        assert fixed_ips.address_of(s, NET.name, inst.id) is None
    assert allocate(db, "vm-next") != address  # a never-used one first


def test_concurrent_allocators_never_share_an_address(db):
    network = FixedNetwork(name="big", cidr="10.9.0.0/24", first="10.9.0.10",
                           last="10.9.0.250", gateway="10.9.0.1")
    ids = [str(uuid.uuid4()) for _ in range(40)]
    start = threading.Barrier(8)

    def work(chunk):
        start.wait(timeout=60)
        return [allocate(db, i, network=network) for i in chunk]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        got = [a for part in pool.map(work, [ids[k::8] for k in range(8)]) for a in part]
    assert len(set(got)) == len(ids)
    with db.transaction() as s:
        assert sorted(fixed_ips.held(s, "big").values()) == sorted(ids)


@pytest.mark.parametrize("fields", [
    dict(cidr="192.0.2.0/24", first="192.0.3.1", last="192.0.2.9"),
    dict(cidr="192.0.2.0/24", first="192.0.2.9", last="192.0.2.1"),
    dict(cidr="192.0.2.0/33", first="192.0.2.1", last="192.0.2.9"),
    dict(cidr="192.0.2.0/24", first="192.0.2.1", last="192.0.2.9", gateway="10.0.0.1"),
    dict(cidr="192.0.2.0/24", first="x", last="192.0.2.9"),
])
def test_networks_that_are_no_networks_are_refused(fields):
    with pytest.raises(exception.Invalid):
        FixedNetwork(name="n", **fields)


def test_network_dict_round_trip():
    assert FixedNetwork.from_dict(NET.to_dict()) == NET
    with pytest.raises(exception.Invalid):
        FixedNetwork.from_dict({"name": "n"})


def test_migration_keeps_the_addresses_of_live_vms(conf):
    url = config.database_url(conf)
    migration.db_sync(url, revision="0012")
    engine = sa.create_engine(url)
    try:
        with engine.begin() as c:
            for vm, ip, deleted in (("vm-1", "192.168.123.10", None),
                                    ("vm-2", None, None),
                                    ("vm-3", "192.168.123.11", "2026-01-02")):
                c.execute(sa.text(
                    "INSERT INTO instances (id, name, project_id, image_id, flavor_id, vcpus, "
                    "memory_mb, root_gb, host, vm_state, power_state, ip_address, created_at, "
                    "updated_at, deleted_at) VALUES (:i, :i, 'p', 'img', '1', 1, 64, 1, 'h1', "
                    "'active', 'running', :ip, '2026-01-01', '2026-01-01', :d)"),
                    {"i": vm, "ip": ip, "d": deleted})
        migration.db_sync(url)
        with engine.begin() as c:
            rows = c.execute(sa.text("SELECT network, address, instance_id, host "
                                     "FROM fixed_ips")).all()
        assert [tuple(r) for r in rows] == [("mininova", "192.168.123.10", "vm-1", "h1")]
    finally:
        engine.dispose()


def test_models_match_the_migration(db):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from common.db.models import Base
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert [d for d in diff if "fixed_ips" in repr(d)] == []
