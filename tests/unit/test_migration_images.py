"""Migration 0011: images registered before become public, ``bare`` and
owned by nobody, still active with their sha256; the model and the
migration agree; a downgrade refuses images without data. Migration 0012:
names may repeat; a downgrade refuses repeated names."""
import pytest
import sqlalchemy as sa

from common import config
from common.db import migration

IMAGE_TABLES = {"images", "image_properties", "image_tags"}


def test_existing_images_stay_usable(conf):
    url = config.database_url(conf)
    migration.db_sync(url, revision="0010")
    engine = sa.create_engine(url)
    with engine.begin() as c:
        c.execute(sa.text(
            "INSERT INTO images (id, name, disk_format, size, checksum, min_ram, min_disk, "
            "location, status, created_at) VALUES ('i1', 'tiny', 'qcow2', 10, :sum, 0, 0, "
            "'/x', 'active', '2026-01-01')"), {"sum": "a" * 64})
    migration.db_sync(url)
    with engine.begin() as c:
        row = c.execute(sa.text("SELECT visibility, owner, container_format, protected, "
                                "os_hidden, status, checksum FROM images")).one()
    assert tuple(row) == ("public", None, "bare", False, False, "active", "a" * 64)
    engine.dispose()


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
    assert [d for d in diff if table_of(d) in IMAGE_TABLES] == []


def test_downgrade_refuses_images_without_data(conf):
    from alembic import command
    url = config.database_url(conf)
    migration.db_sync(url)
    engine = sa.create_engine(url)
    with engine.begin() as c:
        c.execute(sa.text("INSERT INTO images (id, name, status, min_ram, min_disk, visibility, "
                          "protected, os_hidden, created_at) VALUES ('q1', 'q', 'queued', 0, 0, "
                          "'shared', false, false, '2026-01-01')"))
    cfg = migration._config(url)
    with engine.begin() as c:  # SQLite's DDL is not rolled back: start at 0011
        cfg.attributes["connection"] = c
        command.downgrade(cfg, "0011")
    with pytest.raises(RuntimeError, match="q1"):
        with engine.begin() as c:
            cfg.attributes["connection"] = c
            command.downgrade(cfg, "0010")
    with engine.begin() as c:
        c.execute(sa.text("UPDATE images SET deleted_at = '2026-01-02', status = 'deleted'"))
    with engine.begin() as c:
        cfg.attributes["connection"] = c
        command.downgrade(cfg, "0010")
    with engine.begin() as c:
        assert c.execute(sa.text("SELECT count(*) FROM images")).scalar() == 0
    engine.dispose()
    assert migration.db_version(url) == "0010"


def test_names_may_repeat_and_a_downgrade_refuses_them(conf):
    from alembic import command
    url = config.database_url(conf)
    migration.db_sync(url)
    engine = sa.create_engine(url)
    with engine.begin() as c:
        for image_id in ("a1", "a2"):
            c.execute(sa.text(
                "INSERT INTO images (id, name, disk_format, size, checksum, min_ram, min_disk, "
                "location, status, visibility, protected, os_hidden, created_at) VALUES (:i, "
                "'same', 'qcow2', 1, 'x', 0, 0, '/x', 'active', 'public', false, false, "
                "'2026-01-01')"), {"i": image_id})
    cfg = migration._config(url)
    with engine.begin() as c:  # SQLite's DDL is not rolled back: start at 0012
        cfg.attributes["connection"] = c
        command.downgrade(cfg, "0012")
    with pytest.raises(RuntimeError, match="same"):
        with engine.begin() as c:
            cfg.attributes["connection"] = c
            command.downgrade(cfg, "0011")
    with engine.begin() as c:
        c.execute(sa.text("UPDATE images SET name = 'other' WHERE id = 'a2'"))
    with engine.begin() as c:
        cfg.attributes["connection"] = c
        command.downgrade(cfg, "0011")
    engine.dispose()
    assert migration.db_version(url) == "0011"
