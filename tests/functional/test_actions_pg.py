"""The action timeline on PostgreSQL: the migration, models agreeing with it,
ON CONFLICT idempotency and ON DELETE CASCADE (a private database per run)."""
import datetime
import uuid

import pytest
import sqlalchemy as sa

from common.db import actions
from common.db.models import InstanceAction, InstanceActionEvent

pytestmark = pytest.mark.real_services("postgresql")

T0 = datetime.datetime(2024, 5, 1, 12, 0, 0)


def test_actions_on_postgresql(pg_db):
    # (the schema itself is checked against the models in test_scheduler_pg)
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
