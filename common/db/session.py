"""Engine and transactions.

Callers hold an ``Database`` (injected into services) and do their work in
``with db.transaction() as s:``. Database outages surface as
``ServiceUnavailable`` so the API answers 503 instead of 500.
"""
import contextlib
import logging

import sqlalchemy as sa
from sqlalchemy import event, exc, orm

from common import exception

LOG = logging.getLogger(__name__)


def _sqlite_pragmas(dbapi_conn, _record):
    # Take transaction control from pysqlite (which would BEGIN only before
    # the first write, leaving earlier reads outside the transaction).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


class Database:
    def __init__(self, url, pool_size=10):
        self.url = url
        kwargs = {"future": True}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 10}
        else:
            # pre_ping: a restarted PostgreSQL leaves dead pooled connections.
            kwargs.update(pool_pre_ping=True, pool_size=pool_size, max_overflow=pool_size)
        self.engine = sa.create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
            # The embedded DB is for trying things: one writer at a time, with
            # its reads inside its transaction, is what keeps claims and group
            # placement race-free there (PostgreSQL uses row locks instead).
            event.listen(self.engine, "begin",
                         lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
        self._sessionmaker = orm.sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self):
        return self.engine.dialect.name

    @contextlib.contextmanager
    def transaction(self):
        """A session in a transaction: committed on success, rolled back on error."""
        session = self._sessionmaker()
        try:
            with session.begin():
                yield session
        except exc.OperationalError as e:
            if _is_disconnect(e):
                LOG.warning("database unreachable: %s", e.orig)
                raise exception.ServiceUnavailable(reason="database unreachable") from e
            raise
        except exc.InterfaceError as e:
            raise exception.ServiceUnavailable(reason="database unreachable") from e
        finally:
            session.close()

    def dispose(self):
        self.engine.dispose()


def _is_disconnect(e):
    if e.connection_invalidated:
        return True
    text = str(e.orig).lower()
    return any(s in text for s in (
        "could not connect", "connection refused", "server closed the connection",
        "terminating connection", "the database system is", "connection to server"))
