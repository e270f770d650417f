"""Migration 0014: VMs made before get the defaults of Nova's server fields
(no metadata, MANUAL, unlocked); the model and the migration agree; a
downgrade drops them again. Migration 0015: live VMs' names stay unique per
project (their name_scope), deleted ones have none; a downgrade refuses
names that repeat in a project."""
import pytest
import sqlalchemy as sa

from common import config
from common.db import migration

TABLES = {"instances", "instance_metadata"}


def test_existing_vms_get_the_defaults_and_a_downgrade_drops_them(conf):
    from alembic import command
    url = config.database_url(conf)
    migration.db_sync(url, revision="0013")
    engine = sa.create_engine(url)
    with engine.begin() as c:
        c.execute(sa.text(
            "INSERT INTO instances (id, name, project_id, image_id, flavor_id, vcpus, "
            "memory_mb, root_gb, vm_state, power_state, created_at, updated_at) VALUES "
            "('v1', 'web1', 'p', 'img', '1', 1, 128, 1, 'active', 'running', '2026-01-01', "
            "'2026-01-01')"))
    migration.db_sync(url)
    with engine.begin() as c:
        row = c.execute(sa.text("SELECT key_name, key_data, user_data, access_ipv4, "
                                "access_ipv6, disk_config, locked, locked_by FROM instances")).one()
        assert tuple(row) == (None, None, None, None, None, "MANUAL", False, None)
        c.execute(sa.text("INSERT INTO instance_metadata (instance_id, key, value) "
                          "VALUES ('v1', 'k', 'v')"))
    cfg = migration._config(url)
    with engine.begin() as c:
        cfg.attributes["connection"] = c
        command.downgrade(cfg, "0013")
    assert "instance_metadata" not in sa.inspect(engine).get_table_names()
    engine.dispose()
    assert migration.db_version(url) == "0013"


def test_models_match_the_migration(db):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from common.db.models import Base
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)

    def table_of(d):
        item = d[0] if isinstance(d, list) else d
        if item[0] in ("add_table", "remove_table"):
            return item[1].name
        if item[0] in ("add_column", "remove_column") or item[0].startswith("modify_"):
            return item[2]
        return getattr(getattr(item[1], "table", None), "name", None)
    assert [d for d in diff if table_of(d) in TABLES] == []


def test_0015_keeps_live_names_unique_per_project_and_a_downgrade_refuses_repeats(conf):
    from alembic import command
    url = config.database_url(conf)
    migration.db_sync(url, revision="0014")
    engine = sa.create_engine(url)
    insert = sa.text(
        "INSERT INTO instances (id, name, project_id, image_id, flavor_id, vcpus, memory_mb, "
        "root_gb, vm_state, power_state, created_at, updated_at, deleted_at) VALUES "
        "(:i, 'web', :p, 'img', '1', 1, 128, 1, 'active', 'running', '2026-01-01', "
        "'2026-01-01', :d)")
    with engine.begin() as c:
        c.execute(insert, {"i": "v1", "p": "p", "d": None})
        c.execute(insert, {"i": "v0", "p": "p", "d": "2026-01-02"})
    migration.db_sync(url)
    with engine.begin() as c:
        scopes = dict(c.execute(sa.text("SELECT id, name_scope FROM instances")).all())
        assert scopes == {"v1": "p", "v0": None}
    with pytest.raises(sa.exc.IntegrityError):
        with engine.begin() as c:
            c.execute(sa.text("INSERT INTO instances (id, name, name_scope, project_id, "
                              "image_id, flavor_id, vcpus, memory_mb, root_gb, vm_state, "
                              "power_state, created_at, updated_at) VALUES ('v2', 'web', 'p', "
                              "'p', 'img', '1', 1, 128, 1, 'active', 'running', '2026-01-01', "
                              "'2026-01-01')"))
    with engine.begin() as c:  # no scope: names repeat
        c.execute(insert, {"i": "v3", "p": "p", "d": None})
    cfg = migration._config(url)
    with pytest.raises(RuntimeError, match="web"):
        with engine.begin() as c:
            cfg.attributes["connection"] = c
            command.downgrade(cfg, "0014")
    with engine.begin() as c:
        c.execute(sa.text("UPDATE instances SET deleted_at = '2026-01-03' WHERE id = 'v3'"))
    with engine.begin() as c:
        cfg.attributes["connection"] = c
        command.downgrade(cfg, "0014")
    engine.dispose()
    assert migration.db_version(url) == "0014"
