"""Quota reservation (common.db.auth.quota_reserve): one conditional UPDATE
of one of a project's usage rows, which exist from the project's creation on
(or are made once for a project that lacks them); limits read by the
statement itself; what a project holds is the sum of its rows."""
import pytest
import sqlalchemy as sa

from common import exception
from common.db import auth
from common.db.models import QuotaUsage

DEFAULTS = {"instances": 3, "cores": 4, "ram": 1000}


def usage(db, project_id):
    with db.transaction() as s:
        return auth.quota_usage(s, project_id)


def reserve(db, project_id, cores=1, ram=100, defaults=DEFAULTS):
    with db.transaction() as s:
        auth.quota_reserve(s, project_id, defaults, cores, ram)


def rows(db, project_id):
    with db.transaction() as s:
        return {r.shard: (r.instances, r.cores, r.ram) for r in s.scalars(
            sa.select(QuotaUsage).where(QuotaUsage.project_id == project_id))}


def test_the_usage_rows_come_with_the_project(db):
    with db.transaction() as s:
        project = auth.project_create(s, "p1")
    assert rows(db, project.id) == {k: (0, 0, 0) for k in range(auth.USAGE_SHARDS)}
    reserve(db, project.id)
    assert usage(db, project.id) == {"instances": 1, "cores": 1, "ram": 100}


def test_a_project_without_usage_row_gets_one_once(db):
    reserve(db, "older")
    reserve(db, "older", cores=2)
    assert usage(db, "older") == {"instances": 2, "cores": 3, "ram": 200}


@pytest.mark.parametrize("want, resource", [
    ({"cores": 4}, "cores"), ({"ram": 901}, "ram")])
def test_each_limit_is_checked_and_named(db, want, resource):
    reserve(db, "p")
    with pytest.raises(exception.QuotaExceeded) as e:
        reserve(db, "p", **want)
    assert "Quota exceeded for %s" % resource in e.value.message
    assert usage(db, "p") == {"instances": 1, "cores": 1, "ram": 100}  # unchanged


def test_overrides_and_unlimited(db):
    for _ in range(3):
        reserve(db, "p")
    with pytest.raises(exception.QuotaExceeded, match="instances: requested 1, 3 of 3 used"):
        reserve(db, "p")
    with db.transaction() as s:
        auth.quota_set(s, "p", {"instances": 4})
    reserve(db, "p")                 # the override is read at once: no cache
    with db.transaction() as s:
        auth.quota_set(s, "p", {"instances": -1, "cores": -1, "ram": -1})
    for _ in range(5):
        reserve(db, "p", cores=10, ram=10000)
    assert usage(db, "p")["instances"] == 9
    reserve(db, "q", defaults={"instances": -1, "cores": -1, "ram": -1}, cores=99)


def test_a_limit_of_zero_refuses_the_first_create(db):
    with db.transaction() as s:
        auth.quota_set(s, "p", {"instances": 0})
    with pytest.raises(exception.QuotaExceeded, match="instances: requested 1, 0 of 0 used"):
        reserve(db, "p")


def test_without_limits_creates_spread_over_the_rows_and_usage_is_their_sum(db):
    unlimited = {"instances": -1, "cores": -1, "ram": -1}
    for _ in range(40):
        reserve(db, "p", cores=2, ram=64, defaults=unlimited)
    spread = rows(db, "p")
    assert len([r for r in spread.values() if r != (0, 0, 0)]) > 1
    assert usage(db, "p") == {"instances": 40, "cores": 80, "ram": 2560}
    for _ in range(40):
        with db.transaction() as s:
            auth.quota_release(s, "p", 2, 64)
    assert usage(db, "p") == {"instances": 0, "cores": 0, "ram": 0}


def test_a_limit_counts_every_row(db):
    """Usage spread while the project had no limits is all counted once it
    has one, whichever row each change went to."""
    unlimited = {"instances": -1, "cores": -1, "ram": -1}
    for _ in range(12):
        reserve(db, "p", defaults=unlimited)
    with db.transaction() as s:
        auth.quota_set(s, "p", {"instances": 14, "cores": -1, "ram": -1})
    reserve(db, "p")
    reserve(db, "p")
    with pytest.raises(exception.QuotaExceeded, match="instances: requested 1, 14 of 14 used"):
        reserve(db, "p")
    with db.transaction() as s:     # a release, to any row, makes room again
        auth.quota_release(s, "p", 1, 100)
    reserve(db, "p")
    assert usage(db, "p")["instances"] == 14


def test_a_shrink_and_a_release_always_fit(db):
    for _ in range(3):
        reserve(db, "p")
    with db.transaction() as s:
        auth.quota_set(s, "p", {"instances": 1, "cores": 1})   # lowered below usage
        auth.quota_resize(s, "p", DEFAULTS, -1, -50)
    with db.transaction() as s:
        auth.quota_release(s, "p", 1, 100)
    assert usage(db, "p") == {"instances": 2, "cores": 1, "ram": 150}
    with pytest.raises(exception.QuotaExceeded, match="cores"):
        with db.transaction() as s:
            auth.quota_resize(s, "p", DEFAULTS, 1, 0)
