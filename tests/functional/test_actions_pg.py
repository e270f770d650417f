"""The action timeline on PostgreSQL: the migration, models agreeing with it,
ON CONFLICT idempotency and ON DELETE CASCADE (a private database per run)."""
import datetime
import subprocess
import uuid

import pytest
import sqlalchemy as sa

from common.db import actions, migration
from common.db.models import Base, InstanceAction, InstanceActionEvent
from common.db.session import Database
from tests.functional.stack import PG_ADMIN

T0 = datetime.datetime(2024, 5, 1, 12, 0, 0)


@pytest.fixture
def pg_db():
    name = "mininova_actions_" + uuid.uuid4().hex[:8]
    subprocess.run(PG_ADMIN + ['CREATE DATABASE "%s"' % name], check=True)
    url = "postgresql+psycopg2://postgres@127.0.0.1/" + name
    db = None
    try:
        migration.db_sync(url)
        db = Database(url)
        yield db
    finally:
        if db is not None:
            db.dispose()
        subprocess.run(PG_ADMIN + ['DROP DATABASE IF EXISTS "%s"' % name], check=True)


def test_actions_on_postgresql(pg_db):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    with pg_db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    ours = ("instance_actions", "instance_action_events")
    assert [d for d in diff if any(t in repr(d) for t in ours)] == []
    assert migration.db_version(pg_db.url) == "0003"

    vm = str(uuid.uuid4())
    with pg_db.transaction() as s:
        a = actions.event_record(s, vm, "req-1", "accepted", "api", T0, T0, "success")
        b = actions.action_start(s, vm, "req-1", "create", "p", "u", start_time=T0)
        c = actions.action_start(s, vm, "req-1", "create", "p", "u")  # duplicate: no abort
        assert a.action_id == b.id == c.id and b.action == "create"
        actions.event_record(s, vm, "req-1", "accepted", "api", T0, T0, "success")
        actions.action_finish(s, vm, "req-1", "success",
                              finish_time=T0 + datetime.timedelta(seconds=2))
    with pg_db.transaction() as s:
        action, events = actions.action_get(s, vm, "req-1")
        assert action.result == "success" and len(events) == 1
        assert actions.action_list(s, vm, project_id="p") == [action]
        s.execute(sa.delete(InstanceAction))
    with pg_db.transaction() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(InstanceActionEvent)) == 0
