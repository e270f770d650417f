"""``db sync``: upgrade the schema to the newest Alembic revision."""
import os

from alembic import command
from alembic.config import Config
import sqlalchemy as sa

MIGRATIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "migrations")


def _config(url):
    cfg = Config()
    cfg.set_main_option("script_location", MIGRATIONS)
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def db_sync(url, revision="head"):
    if url.startswith("sqlite:///"):
        os.makedirs(os.path.dirname(os.path.abspath(url[len("sqlite:///"):])), exist_ok=True)
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            cfg = _config(url)
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, revision)
    finally:
        engine.dispose()


def db_version(url):
    from alembic.runtime.migration import MigrationContext
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
