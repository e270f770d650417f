"""Quota usage spread over a project's rows (common/db/auth.py,
USAGE_SHARDS) on PostgreSQL under concurrency: a burst against a limit
never overshoots it, also when the usage was spread while the project had
no limit and releases run meanwhile; a burst without limits counts every
create; nobody deadlocks."""
import concurrent.futures
import threading

import pytest

from common import exception
from common.db import auth

pytestmark = pytest.mark.real_services("postgresql")

UNLIMITED = {"instances": -1, "cores": -1, "ram": -1}
LIMITED = {"instances": 10, "cores": 20, "ram": 51200}


def burst(db, project, n, defaults, release_every=0):
    """``n`` reserves of 1 vCPU / 64 MB at once (one in ``release_every``
    a release instead); how many reserves fit and how many were refused."""
    start = threading.Barrier(min(n, 16))

    def one(i):
        if n <= 16:
            start.wait()
        with db.transaction() as s:
            if release_every and i % release_every == 0:
                auth.quota_release(s, project, 1, 64)
                return "released"
            try:
                auth.quota_reserve(s, project, defaults, 1, 64)
                return "fit"
            except exception.QuotaExceeded:
                return "refused"
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(n)))
    return {k: results.count(k) for k in ("fit", "refused", "released")}


def used(db, project):
    with db.transaction() as s:
        return auth.quota_usage(s, project)


def test_unlimited_burst_counts_every_create(pg_db):
    with pg_db.transaction() as s:
        auth.project_create(s, "free", project_id="free")
    assert burst(pg_db, "free", 200, UNLIMITED)["fit"] == 200
    assert used(pg_db, "free") == {"instances": 200, "cores": 200, "ram": 12800}


def test_limited_burst_never_overshoots_usage_spread_before(pg_db):
    with pg_db.transaction() as s:
        auth.project_create(s, "p", project_id="p")
    assert burst(pg_db, "p", 30, UNLIMITED)["fit"] == 30      # spread over the rows
    with pg_db.transaction() as s:
        auth.quota_set(s, "p", {"instances": 40, "cores": -1, "ram": -1})
    assert burst(pg_db, "p", 16, LIMITED) == {"fit": 10, "refused": 6, "released": 0}
    assert used(pg_db, "p")["instances"] == 40
    # Releases among the reserves: every change counted once, the limit
    # held at the end.
    for _ in range(3):
        before = used(pg_db, "p")["instances"]
        outcome = burst(pg_db, "p", 48, LIMITED, release_every=3)
        held = used(pg_db, "p")["instances"]
        assert held == before - outcome["released"] + outcome["fit"] <= 40, (before, outcome)
        assert outcome["refused"] > 0, outcome   # the limit was reached on the way
