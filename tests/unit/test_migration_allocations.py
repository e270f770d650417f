"""Migration 0009: every claim becomes its VM's allocation on the claim's
host, the hosts' sums untouched; and back."""
from alembic import command
import sqlalchemy as sa

from common import config
from common.db import migration

CLAIMS = [("vm-1", "h1", 1, 128, 1), ("vm-2", "h1", 2, 256, 2), ("vm-3", "h2", 1, 64, 1)]


def test_claims_become_allocations_and_back(conf):
    url = config.database_url(conf)
    migration.db_sync(url, revision="0008")
    engine = sa.create_engine(url)
    try:
        with engine.begin() as c:
            for vm, host, vcpus, memory_mb, disk_gb in CLAIMS:
                c.execute(sa.text(
                    "INSERT INTO claims (instance_id, host, vcpus, memory_mb, disk_gb, "
                    "created_at) VALUES (:i, :h, :v, :m, :d, '2026-01-01')"),
                    {"i": vm, "h": host, "v": vcpus, "m": memory_mb, "d": disk_gb})
                c.execute(sa.text(
                    "INSERT INTO instances (id, name, project_id, image_id, flavor_id, vcpus, "
                    "memory_mb, root_gb, host, vm_state, power_state, created_at, updated_at) "
                    "VALUES (:i, :i, 'p', 'img', '1', :v, :m, :d, :h, 'active', 'running', "
                    "'2026-01-01', '2026-01-01')"),
                    {"i": vm, "h": host, "v": vcpus, "m": memory_mb, "d": disk_gb})
        migration.db_sync(url)
        with engine.begin() as c:
            rows = c.execute(sa.text("SELECT consumer_id, host, vcpus, memory_mb, disk_gb "
                                     "FROM allocations ORDER BY consumer_id")).all()
            assert [tuple(r) for r in rows] == CLAIMS
            assert c.execute(sa.text("SELECT count(*) FROM migrations")).scalar() == 0
            assert "claims" not in sa.inspect(c).get_table_names()
        with engine.begin() as c:
            cfg = migration._config(url)
            cfg.attributes["connection"] = c
            command.downgrade(cfg, "0008")
        with engine.begin() as c:
            rows = c.execute(sa.text("SELECT instance_id, host, vcpus, memory_mb, disk_gb "
                                     "FROM claims ORDER BY instance_id")).all()
            assert [tuple(r) for r in rows] == CLAIMS
    finally:
        engine.dispose()
