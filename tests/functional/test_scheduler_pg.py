"""The scheduler's races on PostgreSQL, the real path: atomic claims and
anti-affinity under concurrent schedulers; and the schema agreeing with the models."""
import concurrent.futures

import pytest

from common.db import allocations
from common.db import api as db_api
from common.db.allocations import Resources
from common.db.models import Base
from tests.builds import Builds
from tests.unit.test_scheduler import CTXT, RATIOS, add_host, add_member, get, group

pytestmark = pytest.mark.real_services("postgresql")


def test_models_match_migrations(pg_db):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    with pg_db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_concurrent_claims_never_overcommit(pg_db):
    add_host(pg_db, "h1", vcpus=1, memory_mb=1000, local_gb=100)

    def claim(i):
        with pg_db.transaction() as s:
            return allocations.allocate(s, "vm-%d" % i, "h1", Resources(1, 128, 1), RATIOS)
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(claim, range(60)))
    # 1000 MB * 1.5 / 128 MB = 11 claims, each with its own host generation
    assert sorted(filter(None, results)) == list(range(1, 12))
    with pg_db.transaction() as s:
        (_, node), = db_api.compute_hosts(s)
        assert node.memory_mb_used == 11 * 128


def test_anti_affinity_burst_with_two_schedulers(pg_db, conf):
    for i in range(6):
        add_host(pg_db, "h%d" % i)
    gid = group(pg_db, "anti-affinity")
    vms = [add_member(pg_db, "b%d" % i, gid) for i in range(6)]
    schedulers = [Builds(pg_db, conf) for _ in range(2)]
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda i: schedulers[i % 2].build(CTXT, vms[i]), range(6)))
    hosts = [get(pg_db, vm).host for vm in vms]
    assert None not in hosts and len(set(hosts)) == 6, hosts
