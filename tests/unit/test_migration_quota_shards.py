"""Migration 0019: a project's single usage row becomes its shard 0 (its
other rows are made when a change first goes to one of them), and a downgrade sums the rows back."""
import sqlalchemy as sa

from common import config
from common.db import auth, migration
from common.db.session import Database

DEFAULTS = {"instances": 10, "cores": 20, "ram": 4096}


def test_usage_survives_the_upgrade_and_the_downgrade(conf):
    from alembic import command
    url = config.database_url(conf)
    migration.db_sync(url, "0018")
    cfg = migration._config(url)
    engine = sa.create_engine(url)
    with engine.begin() as c:
        c.execute(sa.text("INSERT INTO quota_usages (project_id, instances, cores, ram) "
                          "VALUES ('p', 3, 6, 768)"))
    migration.db_sync(url)
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from common.db.models import Base
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert not [d for d in diff if "quota_usages" in repr(d)], diff
    db = Database(url)
    try:
        with db.transaction() as s:
            assert auth.quota_usage(s, "p") == {"instances": 3, "cores": 6, "ram": 768}
            auth.quota_reserve(s, "p", DEFAULTS, 2, 256)
        with db.transaction() as s:
            auth.quota_release(s, "p", 1, 128)
        with db.transaction() as s:
            assert auth.quota_usage(s, "p") == {"instances": 3, "cores": 7, "ram": 896}
    finally:
        db.dispose()
    for _ in range(2):   # a second run changes nothing
        with engine.begin() as c:
            cfg.attributes["connection"] = c
            command.downgrade(cfg, "0018")
    with engine.begin() as c:
        assert c.execute(sa.text("SELECT project_id, instances, cores, ram FROM quota_usages")
                         ).all() == [("p", 3, 7, 896)]
    engine.dispose()
