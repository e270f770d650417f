"""Migration ks01: users keep the role they had, as a role assignment in
their project; their tokens keep working; and back."""
import pytest
import sqlalchemy as sa

from common import config
from common.db import auth as db_auth
from common.db import migration
from common.db.session import Database


def test_roles_move_to_assignments_and_back(conf):
    url = config.database_url(conf)
    migration.db_sync(url, revision="0007")
    engine = sa.create_engine(url)
    with engine.begin() as c:
        c.execute(sa.text("INSERT INTO projects (id, name, created_at) VALUES "
                          "('p1', 'p1', '2026-01-01')"))
        for name, role in (("ann", "admin"), ("ben", "member")):
            c.execute(sa.text("INSERT INTO users (id, name, project_id, role, created_at) "
                              "VALUES (:n, :n, 'p1', :r, '2026-01-01')"), {"n": name, "r": role})
        c.execute(sa.text("INSERT INTO tokens (secret_sha256, user_id, created_at) VALUES "
                          "(:h, 'ann', '2026-01-01')"), {"h": db_auth.token_hash("mn-old")})
    migration.db_sync(url)
    db = Database(url)
    try:
        with db.transaction() as s:
            assert db_auth.token_lookup(s, "mn-old") == ("ann", "p1", "admin")
            rows = s.execute(sa.text("SELECT user_id, project_id, role FROM role_assignments "
                                     "ORDER BY user_id")).all()
            assert [tuple(r) for r in rows] == [("ann", "p1", "admin"), ("ben", "p1", "member")]
            enabled = s.execute(sa.text("SELECT enabled, password_hash FROM users")).all()
            assert [tuple(r) for r in enabled] == [(True, None), (True, None)]
    finally:
        db.dispose()
        engine.dispose()


def test_downgrade_keeps_roles_and_refuses_readers(conf):
    from alembic import command
    url = config.database_url(conf)
    migration.db_sync(url)
    db = Database(url)
    try:
        with db.transaction() as s:
            db_auth.project_create(s, "p1", project_id="p1")
            db_auth.user_create(s, "ann", "p1", "admin")
            db_auth.user_create(s, "ben", "p1", "member")
            db_auth.user_create(s, "cy", "p1", "reader")
    finally:
        db.dispose()
    engine = sa.create_engine(url)
    cfg = migration._config(url)
    with engine.begin() as c:  # SQLite's DDL is not rolled back: start at ks01
        cfg.attributes["connection"] = c
        command.downgrade(cfg, "ks01")
    with pytest.raises(RuntimeError, match="cy"):
        with engine.begin() as c:
            cfg.attributes["connection"] = c
            command.downgrade(cfg, "0007")
    with engine.begin() as c:
        c.execute(sa.text("DELETE FROM role_assignments WHERE user_id = "
                          "(SELECT id FROM users WHERE name = 'cy')"))
        c.execute(sa.text("DELETE FROM users WHERE name = 'cy'"))
    with engine.begin() as c:
        cfg.attributes["connection"] = c
        command.downgrade(cfg, "0007")
    with engine.begin() as c:
        rows = c.execute(sa.text("SELECT name, role FROM users ORDER BY name")).all()
    assert [tuple(r) for r in rows] == [("ann", "admin"), ("ben", "member")]
    engine.dispose()
    assert migration.db_version(url) == "0007"
