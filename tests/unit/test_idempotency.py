"""POST /v1/vms with X-Idempotency-Key: one VM per key and project within the
window, the repeats answering 202 with it; migration 0018."""
import concurrent.futures
import datetime

import pytest
import sqlalchemy as sa

from common import config, exception
from common.db import idempotency as db_keys
from common.db import migration
from nova_api.app import create_app
from tests.conftest import Recorder
from tests.unit.conftest import auth_headers, token_for

BODY = {"name": "web1", "image": "blank", "flavor": "m1.tiny"}


class FailsOnce(Recorder):
    """A conductor unreachable for the first create only."""

    def __getattr__(self, method):
        record = super().__getattr__(method)

        def once(ctxt, *args, **kwargs):
            if not self.__dict__.get("failed"):
                self.__dict__["failed"] = True
                raise exception.ServiceUnavailable(reason="message broker unreachable")
            return record(ctxt, *args, **kwargs)
        return once


def make_api(conf, db, conductor):
    app = create_app(conf, db, conductor, Recorder())
    client = app.test_client()
    client.environ_base["HTTP_X_AUTH_TOKEN"] = token_for(db, "default", "admin")
    client.conductor = conductor
    return client


@pytest.fixture
def api(conf, db, image):
    return make_api(conf, db, Recorder())


def post(api, key, body=BODY, **kw):
    headers = kw.pop("headers", {})
    if key is not None:
        headers["X-Idempotency-Key"] = key
    return api.post("/v1/vms", json=body, headers=headers, **kw)


def live_vms(db):
    with db.engine.connect() as c:
        return c.execute(sa.text("SELECT id FROM instances WHERE deleted_at IS NULL")
                         ).scalars().all()


def usage(db, project="default"):
    with db.engine.connect() as c:
        return c.execute(sa.text("SELECT sum(instances) FROM quota_usages WHERE project_id = :p"),
                         {"p": project}).scalar()


def test_the_same_key_creates_one_vm_and_answers_alike(api, db):
    first = post(api, "k-1")
    assert first.status_code == 202 and "X-Idempotent-Replayed" not in first.headers
    again = post(api, "k-1")
    assert again.status_code == 202
    assert again.headers["X-Idempotent-Replayed"] == "true"
    assert again.get_json()["vm"]["id"] == first.get_json()["vm"]["id"]
    assert again.headers["Location"] == first.headers["Location"]
    assert again.get_json()["vm"]["name"] == "web1"
    assert live_vms(db) == [first.get_json()["vm"]["id"]]
    assert [c[0] for c in api.conductor.calls] == ["build_instances"]  # built once
    assert usage(db) == 1  # counted once


def test_the_json_spelling_does_not_matter(api):
    first = post(api, "k")
    again = api.post("/v1/vms", data='{"flavor":"m1.tiny",  "image":"blank","name":"web1"}',
                     content_type="application/json", headers={"X-Idempotency-Key": "k"})
    assert again.status_code == 202
    assert again.get_json()["vm"]["id"] == first.get_json()["vm"]["id"]


def test_without_a_key_or_with_another_each_create_is_new(api, db):
    assert post(api, None, dict(BODY, name="a")).status_code == 202
    assert post(api, None, dict(BODY, name="b")).status_code == 202
    assert post(api, "k1", dict(BODY, name="c")).status_code == 202
    assert post(api, "k2", dict(BODY, name="d")).status_code == 202
    assert len(live_vms(db)) == 4


def test_the_same_key_with_another_body_is_refused(api, db):
    vm = post(api, "k").get_json()["vm"]
    r = post(api, "k", dict(BODY, name="web2"))
    assert r.status_code == 409
    message = r.get_json()["error"]["message"]
    assert "X-Idempotency-Key 'k'" in message and vm["id"] in message
    assert live_vms(db) == [vm["id"]]


def test_keys_are_per_project(api, db):
    mine = post(api, "k").get_json()["vm"]
    theirs = post(api, "k", headers=auth_headers(db, "other"))
    assert theirs.status_code == 202
    assert theirs.get_json()["vm"]["id"] != mine["id"]
    assert "X-Idempotent-Replayed" not in theirs.headers


@pytest.mark.parametrize("key", ["", "a b", "x" * 256, "caf\u00e9", "tab\there"])
def test_a_bad_key_is_400_naming_the_header(api, db, key):
    r = api.post("/v1/vms", json=BODY, headers={"X-Idempotency-Key": key})
    assert r.status_code == 400
    assert "X-Idempotency-Key" in r.get_json()["error"]["message"]
    assert live_vms(db) == []


def test_a_create_that_failed_frees_its_key(conf, db, image):
    api = make_api(conf, db, FailsOnce())
    assert post(api, "k").status_code == 503
    assert live_vms(db) == []
    retried = post(api, "k")
    assert retried.status_code == 202 and "X-Idempotent-Replayed" not in retried.headers
    assert live_vms(db) == [retried.get_json()["vm"]["id"]]


def test_a_deleted_vm_is_not_replayed(api, db):
    vm = post(api, "k").get_json()["vm"]
    assert api.delete("/v1/vms/" + vm["id"]).status_code == 202
    r = post(api, "k")
    assert r.status_code == 409
    assert "deleted" in r.get_json()["error"]["message"] and live_vms(db) == []


def test_an_expired_key_creates_anew_and_is_purged(conf, api, db):
    first = post(api, "k", dict(BODY, name="old")).get_json()["vm"]
    window = conf.api.idempotency_key_seconds
    with db.engine.begin() as c:
        c.execute(sa.text("UPDATE idempotency_keys SET created_at = :t"),
                  {"t": datetime.datetime.utcnow() - datetime.timedelta(seconds=window + 5)})
    second = post(api, "k", dict(BODY, name="new"))
    assert second.status_code == 202
    assert second.get_json()["vm"]["id"] != first["id"]
    assert post(api, "k", dict(BODY, name="new")).get_json()["vm"]["id"] == \
        second.get_json()["vm"]["id"]
    with db.transaction() as s:
        assert db_keys.purge(s, window) == 0  # the taken-over row is fresh
        assert db_keys.purge(s, window, now=datetime.datetime.utcnow()
                             + datetime.timedelta(seconds=window + 1)) == 1


def test_concurrent_creates_with_one_key_make_one_vm(api, db):
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: post(api, "race"), range(8)))
    assert {a.status_code for a in answers} == {202}
    assert len({a.get_json()["vm"]["id"] for a in answers}) == 1
    assert len(live_vms(db)) == 1 and usage(db) == 1
    assert len(api.conductor.calls) == 1


def test_migration_0018_up_down_and_models_match(conf):
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from common.db.models import Base
    url = config.database_url(conf)
    migration.db_sync(url)
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert not [d for d in diff if "idempotency" in repr(d)], diff
    cfg = migration._config(url)
    with engine.begin() as c:
        cfg.attributes["connection"] = c
        command.downgrade(cfg, "0017")
    assert "idempotency_keys" not in sa.inspect(engine).get_table_names()
    engine.dispose()
    migration.db_sync(url)
    assert migration.db_version(url) >= "0018"  # back at the head
