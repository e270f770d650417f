"""Engine and transactions.

Callers hold an ``Database`` (injected into services) and do their work in
``with db.transaction() as s:``, or ``db.run(fn)`` for a transaction that may
be run again after a lost connection. Database outages surface as
``DatabaseUnavailable`` (a ``ServiceUnavailable``: 503 from the API, a retry
of the cast in the daemons) naming the phase the connection was lost in
(common/db/retry.py).
"""
import contextlib
import logging
import select
import time

import sqlalchemy as sa
from sqlalchemy import event, exc, orm

from common import exception
from common.db import retry
from common.db.retry import COMMIT, CONNECT, STATEMENT

LOG = logging.getLogger(__name__)


# Recycle connections older than this at checkout (e.g. against idle timeouts
# of something between us and the server that would cut them silently).
POOL_RECYCLE_SECONDS = 3600
# How long a transaction waits for the database to come back (a restart, a
# failover) before giving up: connecting again, and for ``run`` running the
# transaction again when that is safe.
RETRY_SECONDS = 3.0


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
    def __init__(self, url, pool_size=10, retry_seconds=RETRY_SECONDS,
                 clock=time.monotonic, sleep=time.sleep):
        self.url = url
        self.retry_seconds = retry_seconds
        self._clock, self._sleep = clock, sleep
        # rowcount kept for every statement: psycopg 3 forgets it when its
        # cursor closes, which SQLAlchemy does at once after an INSERT (an
        # INSERT ... ON CONFLICT DO NOTHING tells by its rowcount what it did).
        kwargs = {"future": True, "execution_options": {"preserve_rowcount": True}}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 10}
        else:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size,
                          pool_recycle=POOL_RECYCLE_SECONDS)
        self.engine = sa.create_engine(url, **kwargs)
        event.listen(self.engine, "begin", _began)
        event.listen(self.engine, "before_cursor_execute", _note_write)
        if not url.startswith("sqlite"):
            # A restarted PostgreSQL leaves dead pooled connections: found at
            # checkout by a look at the socket. One that dies while in use
            # fails its statement (DatabaseUnavailable below); SQLAlchemy then
            # invalidates the whole pool, so the next transaction reconnects.
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
    def transaction(self, isolation_level=None):
        """A session in a transaction: committed on success, rolled back on error.
        Its connection is had first, waiting up to ``retry_seconds`` for a
        database that is restarting; a connection lost later raises
        DatabaseUnavailable with the phase it was lost in. ``isolation_level``:
        the transaction's, if not the default (e.g. "REPEATABLE READ")."""
        session, conn, phase = None, None, CONNECT
        try:
            session = self._connected_session(isolation_level)
            phase = STATEMENT
            yield session
            session.flush()
            conn = session.connection() if session.in_transaction() else None
            phase = COMMIT if conn is not None and conn.info.get(_WROTE, True) else READ_COMMIT
            session.commit()
        except BaseException as e:
            if phase == READ_COMMIT and _is_lost(e):
                # Only reads, all answered: nothing to commit was lost. No
                # rollback (it would expire the objects read, which the
                # caller uses detached): the connection is dropped instead.
                LOG.info("database connection lost at the commit of a read-only transaction")
                _invalidate(conn)
                return
            if session is not None:
                _rollback(session)
            translated = _translated(e, phase)
            if translated is e:
                raise
            raise translated from e
        finally:
            if session is not None:
                session.close()

    def run(self, fn, idempotent=False):
        """``fn(session)`` in a transaction; its result. Run again, within
        ``retry_seconds``, after a lost connection that left nothing applied,
        and after one lost at commit when ``idempotent`` (``fn`` looks before
        it writes). ``fn`` must not have effects outside the session."""
        backoff = retry.Backoff(self._clock, self._clock() + self.retry_seconds)
        while True:
            try:
                with self.transaction() as s:
                    return fn(s)
            except exception.DatabaseUnavailable as e:
                if not retry.may_run_again(e.phase, idempotent):
                    raise
                pause = backoff.pause()
                if pause is None:
                    raise
                LOG.warning("database connection lost (%s); running the transaction again",
                            e.phase)
                self._sleep(pause)

    def _connected_session(self, isolation_level=None):
        """A session holding a connection (nothing sent yet): connecting is
        always safe to retry."""
        options = {"isolation_level": isolation_level} if isolation_level else {}
        if self.dialect == "sqlite" and not options:
            return self._sessionmaker()  # the connection when first used (nothing to retry)
        backoff = None
        while True:
            session = self._sessionmaker()
            try:
                session.connection(execution_options=options)
                return session
            except exc.DBAPIError as e:
                session.close()
                if not retry.is_disconnect(e):
                    raise
                if backoff is None:
                    backoff = retry.Backoff(self._clock, self._clock() + self.retry_seconds)
                pause = backoff.pause()
                if pause is None:
                    raise
                self._sleep(pause)

    def dispose(self):
        self.engine.dispose()


# Whether the connection's transaction sent anything but reads, in its info.
_WROTE = "mininova_wrote"
_READS = ("SELECT", "BEGIN")
# A commit after reads only: losing the connection there loses nothing.
READ_COMMIT = "read-only commit"


def _began(conn):
    conn.info[_WROTE] = False


def _note_write(conn, _cursor, statement, *_args):
    if not statement.lstrip()[:6].upper().startswith(_READS):
        conn.info[_WROTE] = True


def _invalidate(conn):
    try:
        if conn is not None:
            conn.invalidate()
    except exc.SQLAlchemyError:
        pass


def _is_lost(e):
    return isinstance(e, exc.DBAPIError) and (isinstance(e, exc.InterfaceError)
                                              or retry.is_disconnect(e))


def _rollback(session):
    try:
        session.rollback()
    except exc.SQLAlchemyError:  # the connection is gone (so is its transaction),
        pass                     # or the commit was made before its answer was lost


def _translated(e, phase):
    """The exception a transaction that failed with ``e`` in ``phase`` raises."""
    if isinstance(e, exception.MininovaException):
        return e
    if _is_lost(e):
        LOG.warning("database unreachable (%s): %s", phase, str(e.orig).strip())
        return exception.DatabaseUnavailable(reason=retry.reason(phase), phase=phase)
    if isinstance(e, exc.TimeoutError):  # no pooled connection free in time
        return exception.ServiceUnavailable(reason="database busy: %s" % e)
    return e
