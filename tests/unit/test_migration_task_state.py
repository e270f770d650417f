"""Migration 0017: a VM's task_state takes Nova's 17-character
"resize_confirming" (PostgreSQL's column altered; SQLite enforces no
length); a downgrade is refused while a VM is in such a task."""
import pytest
import sqlalchemy as sa

from common import config, states
from common.db import migration
from common.db.models import Instance


def test_task_state_is_wide_enough_and_a_downgrade_waits_for_long_tasks(conf):
    from alembic import command
    url = config.database_url(conf)
    migration.db_sync(url)
    engine = sa.create_engine(url)
    assert Instance.__table__.c.task_state.type.length == 32
    assert max(len(t) for t in (states.RESIZE_CONFIRMING, states.RESIZE_REVERTING,
                                states.REBUILD_SPAWNING)) <= 32
    with engine.begin() as c:
        c.execute(sa.text(
            "INSERT INTO instances (id, name, project_id, image_id, flavor_id, vcpus, "
            "memory_mb, root_gb, vm_state, task_state, power_state, created_at, updated_at) "
            "VALUES ('v1', 'web1', 'p', 'img', '1', 1, 128, 1, 'resized', "
            "'resize_confirming', 'running', '2026-01-01', '2026-01-01')"))
    cfg = migration._config(url)
    with pytest.raises(RuntimeError, match="v1"):
        with engine.begin() as c:
            cfg.attributes["connection"] = c
            command.downgrade(cfg, "0016")
    with engine.begin() as c:
        c.execute(sa.text("UPDATE instances SET task_state = NULL"))
    with engine.begin() as c:
        cfg.attributes["connection"] = c
        command.downgrade(cfg, "0016")
    engine.dispose()
    assert migration.db_version(url) == "0016"
