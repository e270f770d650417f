"""Quota reservation (common.db.auth.quota_reserve): one conditional UPDATE
of a usage row that exists from the project's creation on (or is made once
for a project that lacks it); limits read by the statement itself."""
import pytest

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


def test_the_usage_row_comes_with_the_project(db):
    with db.transaction() as s:
        project = auth.project_create(s, "p1")
    with db.transaction() as s:
        assert s.get(QuotaUsage, project.id) is not None
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
