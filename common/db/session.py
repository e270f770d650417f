"""Engine and transactions.

Callers hold an ``Database`` (injected into services) and do their work in
``with db.transaction() as s:``. Database outages surface as
``ServiceUnavailable`` so the API answers 503 instead of 500.
"""
import contextlib
import logging
import select

import sqlalchemy as sa
from sqlalchemy import event, exc, orm

from common import exception

LOG = logging.getLogger(__name__)


# Recycle connections older than this at checkout (e.g. against idle timeouts
# of something between us and the server that would cut them silently).
POOL_RECYCLE_SECONDS = 3600


def _dead_at_checkout(dbapi_conn, _record, _proxy):
    """A pooled connection the server has closed, found without a round trip.

    An idle connection has nothing to read; one whose server went away
    (restart, shutdown, idle-session timeout) has its FATAL message or EOF
    waiting on the socket. Raising DisconnectionError makes the pool drop it
    and check out a fresh one (SQLAlchemy's "pessimistic" handling without
    pool_pre_ping's SELECT 1 on every checkout)."""
    try:
        fd = dbapi_conn.fileno()
    except Exception as e:  # psycopg2: "connection already closed"
        raise exc.DisconnectionError("connection closed") from e
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
    if poller.poll(0):
        raise exc.DisconnectionError("the server closed the connection")


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
            kwargs.update(pool_size=pool_size, max_overflow=pool_size,
                          pool_recycle=POOL_RECYCLE_SECONDS)
        self.engine = sa.create_engine(url, **kwargs)
        if not url.startswith("sqlite"):
            # A restarted PostgreSQL leaves dead pooled connections: found at
            # checkout by a look at the socket. One that dies while in use
            # fails its statement (503 below); SQLAlchemy then invalidates the
            # whole pool, so the next request reconnects.
            event.listen(self.engine, "checkout", _dead_at_checkout)
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
        except exc.InterfaceError as e:
            raise exception.ServiceUnavailable(reason="database unreachable") from e
        except exc.DBAPIError as e:
            if _is_disconnect(e):
                LOG.warning("database unreachable: %s", str(e.orig).strip())
                raise exception.ServiceUnavailable(reason="database unreachable") from e
            raise
        except exc.TimeoutError as e:  # no pooled connection free in time
            raise exception.ServiceUnavailable(reason="database busy: %s" % e) from e
        finally:
            session.close()

    def dispose(self):
        self.engine.dispose()


# SQLSTATEs of a server going away: class 08 (connection exception),
# admin_shutdown, crash_shutdown, cannot_connect_now.
_DISCONNECT_PGCODES = ("57P01", "57P02", "57P03")
_DISCONNECT_TEXT = (
    "could not connect", "connection refused", "server closed the connection",
    "terminating connection", "the database system is", "connection to server",
    "ssl syscall error", "ssl connection has been closed", "connection already closed",
    "no connection to the server", "could not receive data", "could not send data",
    "connection reset by peer", "broken pipe")


def _is_disconnect(e):
    if e.connection_invalidated:
        return True
    code = getattr(e.orig, "pgcode", None)
    if code and (code.startswith("08") or code in _DISCONNECT_PGCODES):
        return True
    text = str(e.orig).lower()
    return any(s in text for s in _DISCONNECT_TEXT)
