"""Migrations 0008 and 0010: flavors keep what they were and gain Nova's
other fields; keypairs, flavor access, extra specs and quota classes have
tables that match the models; compute nodes gain the hypervisor's version
and CPU; and back."""
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from common import config
from common.db import migration
from common.db.models import Base

REVISION, PREVIOUS = "0008", "ks01"
HYPERVISOR_REVISION, BEFORE_HYPERVISOR = "0010", "0009"
TABLES = {"flavors", "flavor_projects", "flavor_extra_specs", "key_pairs", "quota_classes",
          "quota_limits", "compute_nodes"}


def _table_of(diff):
    item = diff[0] if isinstance(diff, list) else diff
    kind = item[0]
    if kind in ("add_table", "remove_table"):
        return item[1].name
    if kind in ("add_column", "remove_column") or kind.startswith("modify_"):
        return item[2]
    return getattr(getattr(item[1], "table", None), "name", None)


def test_models_match_the_migration(db):
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert [d for d in diff if _table_of(d) in TABLES] == []


def test_flavors_keep_their_sizes_and_back(conf):
    url = config.database_url(conf)
    migration.db_sync(url, revision=PREVIOUS)
    engine = sa.create_engine(url)
    try:
        migration.db_sync(url, revision=REVISION)
        with engine.begin() as c:
            row = c.execute(sa.text(
                "SELECT name, memory_mb, ephemeral_gb, swap_mb, rxtx_factor, is_public, "
                "disabled FROM flavors WHERE id = '1'")).one()
            assert tuple(row) == ("m1.tiny", 128, 0, 0, 1.0, True, False)
            c.execute(sa.text("INSERT INTO quota_limits (project_id, resource, hard_limit) "
                              "VALUES ('p1', 'server_group_members', 3), ('p1', 'cores', 4)"))
        cfg = migration._config(url)
        with engine.begin() as c:
            cfg.attributes["connection"] = c
            command.downgrade(cfg, PREVIOUS)
        assert migration.db_version(url) == PREVIOUS
        with engine.begin() as c:
            rows = c.execute(sa.text("SELECT resource FROM quota_limits")).all()
            assert [r[0] for r in rows] == ["cores"]   # what the old schema cannot hold goes
            assert "key_pairs" not in sa.inspect(c).get_table_names()
        migration.db_sync(url, revision=REVISION)
        assert migration.db_version(url) == REVISION
    finally:
        engine.dispose()


def test_hypervisor_details_are_kept_and_back(conf):
    url = config.database_url(conf)
    migration.db_sync(url)
    engine = sa.create_engine(url)
    try:
        with engine.begin() as c:
            c.execute(sa.text("INSERT INTO compute_nodes (host, vcpus, memory_mb, local_gb, "
                              "vcpus_used, memory_mb_used, local_gb_used, updated_at, "
                              "generation, hypervisor_version, cpu_info) VALUES ('h1', 1, 1, "
                              "1, 0, 0, 0, '2026-01-01', 0, 8000000, '{}')"))
        cfg = migration._config(url)
        with engine.begin() as c:
            cfg.attributes["connection"] = c
            command.downgrade(cfg, BEFORE_HYPERVISOR)
        with engine.begin() as c:
            assert c.execute(sa.text("SELECT host FROM compute_nodes")).scalar() == "h1"
        assert migration.db_version(url) == BEFORE_HYPERVISOR
    finally:
        engine.dispose()
