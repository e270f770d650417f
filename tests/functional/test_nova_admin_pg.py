"""The Nova resources' writes on PostgreSQL under concurrency: writers of
the same extra spec, quota limit or quota class all succeed (one upsert
each, the last wins), a keypair name is taken once, a flavor id once."""
import concurrent.futures

import pytest

from common import exception
from common.db import auth as db_auth
from common.db import flavors as db_flavors
from common.db import keypairs as db_keypairs
from common.db import quota_sets
from tests.unit.test_compute_keypairs import ED25519

pytestmark = pytest.mark.real_services("postgresql")
DEFAULTS = {"instances": 10, "cores": 20, "ram": 51200}


def run_concurrently(fn, n=12):
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        return [f.exception() or f.result() for f in
                [pool.submit(fn, i) for i in range(n)]]


def test_concurrent_upserts_all_succeed(pg_db):
    with pg_db.transaction() as s:
        db_auth.project_create(s, "p1", project_id="p1")

    def write(i):
        with pg_db.transaction() as s:
            db_flavors.extra_specs_set(s, "1", {"k": "v%d" % i})
            quota_sets.project_set(s, "p1", {"server_group_members": i})
            quota_sets.class_set(s, "default", {"key_pairs": i})
    assert run_concurrently(write) == [None] * 12
    with pg_db.transaction() as s:
        assert db_flavors.extra_specs(s, "1")["k"].startswith("v")
        assert 0 <= quota_sets.project_limits(s, "p1", DEFAULTS)["server_group_members"] < 12


def test_one_name_and_one_id_win(pg_db):
    with pg_db.transaction() as s:
        db_auth.project_create(s, "p1", project_id="p1")
        user_id = db_auth.user_create(s, "u", "p1", "member").id

    def keypair(i):
        with pg_db.transaction() as s:
            db_keypairs.create(s, user_id, "p1", "kp", ED25519, DEFAULTS)

    def flavor(i):
        with pg_db.transaction() as s:
            db_flavors.create(s, "f%d" % i, 1, 64, 1, flavor_id="same")
    for fn, error in ((keypair, exception.KeypairExists), (flavor, exception.FlavorExists)):
        outcomes = run_concurrently(fn)
        assert outcomes.count(None) == 1
        assert all(isinstance(o, error) for o in outcomes if o is not None), outcomes
