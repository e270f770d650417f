"""Revocations take effect at once, with the API's token cache: PostgreSQL
LISTEN/NOTIFY, and an acknowledgement the revoker waits for.

The database side (migration 0007): before every UPDATE, DELETE or TRUNCATE
of tokens or users, and every change of role_assignments, inserts included
(migration ks01: a role added changes what a cached token may do too),
whatever does it, plain SQL included, a trigger counts the change in
``auth_epoch`` and sends NOTIFY ``mininova_auth`` with its number, in the
changing transaction: heard only if that commits, in commit order.

The API side, ``RevocationListener``: one connection that LISTENs, in a thread
of its own, and a *generation* the token cache stamps its entries with
(nova_api/auth.py). The generation moves on when the connection is made or
lost, when bytes arrive on it (before they are read), and after notifications
were read. ``current()`` is None (trust no entry) while not connected
(start-up, a database restart: a NOTIFY sent meanwhile is lost to us) and
while bytes wait unread on the socket.

The acknowledgement: the listener shows, as its connection's
``application_name`` (``mininova-api-tokens <n>``), the number of the last
change it has accounted for: at connect, the epoch it read after LISTEN
(everything committed before is covered by the generation moving on after
that read; everything later will be notified); then the highest number
notified, published after the generation moved on. A revoker
(``mininova-manage token revoke``, ``user delete``) reads the epoch its own
change reached and, once committed, waits (``wait_heard``) until every
listener of the database shows at least that: from then on no API process
answers from an entry older than the revocation. A listener that does not
confirm within ``[api] token_cache_seconds`` (+1 s) has let its entries expire
anyway, and is named. A change made in plain SQL is not waited for: it is
refused from the first request after PostgreSQL delivered its NOTIFY (a few
milliseconds).
"""
import logging
import select
import threading
import time

import sqlalchemy as sa

LOG = logging.getLogger(__name__)

CHANNEL = "mininova_auth"
TRIGGERS = ("tokens_notify_auth", "users_notify_auth", "role_assignments_notify_auth")
APP_NAME = "mininova-api-tokens"   # + " <n>": the change this listener accounted for
RETRY_SECONDS = 1.0       # between two connection attempts
IDLE_WAKE_SECONDS = 1.0   # the thread wakes this often to see whether it should stop
# Notice a connection that died silently (no FIN: a cut network) within about
# idle + interval * count seconds; meanwhile the cache's own expiry bounds it.
KEEPALIVE = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2,
             "keepalives_count": 2, "connect_timeout": 5}
_UNREAD = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP


# -- the revoker's side ----------------------------------------------------------

def epoch(s):
    """In a transaction that changed tokens or users: the number its last
    change got (the trigger ran before it). None where nothing listens (SQLite)."""
    if s.get_bind().dialect.name != "postgresql":
        return None
    return s.scalar(sa.text("SELECT n FROM auth_epoch WHERE id = 1"))


def listeners(db):
    """{backend pid: the change number it confirmed, or -1} of the API
    listeners connected to this database."""
    with db.transaction() as s:
        rows = s.execute(sa.text(
            "SELECT pid, application_name FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name LIKE :p"),
            {"p": APP_NAME + "%"}).all()
    acks = {}
    for pid, name in rows:
        number = name[len(APP_NAME):].strip()
        acks[pid] = int(number) if number.isdigit() else -1
    return acks


def wait_heard(db, number, timeout, interval=0.005):
    """Wait until every API listener of the database has accounted for change
    ``number`` (committed); [] then, else the pids still behind at ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        behind = sorted(pid for pid, ack in listeners(db).items() if ack < number)
        if not behind or time.monotonic() >= deadline:
            return behind
        time.sleep(interval)


def wait_until_heard(db, number, timeout):
    """After a revocation committed with change ``number`` (``epoch()``;
    None: nothing listens), wait as ``wait_heard``; the pids still behind
    are logged and returned."""
    if number is None:
        return []
    behind = wait_heard(db, number, timeout)
    if behind:
        LOG.warning("API listener(s) with PostgreSQL backend pid %s did not confirm "
                    "revocation %d within %.0f s", ", ".join(map(str, behind)), number, timeout)
    return behind


# -- the API's side --------------------------------------------------------------

class RevocationListener:
    def __init__(self, db, retry_seconds=RETRY_SECONDS):
        if db.dialect != "postgresql":
            raise ValueError("LISTEN/NOTIFY needs PostgreSQL, not %s" % db.dialect)
        self.db = db
        self._psycopg2 = sa.create_engine("postgresql+psycopg2://").dialect  # no connection
        self.retry_seconds = retry_seconds
        self.generation = 0
        self.connects = 0         # connections made so far (tests wait on it)
        self.backend_pid = None   # of the current connection
        self._fd = None           # its socket while connected and listening; else None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None

    def current(self):
        """The generation, if nothing can have been revoked unseen since it
        was reached; None when the cache must not be trusted now."""
        fd = self._fd
        if fd is None:
            return None
        poller = select.poll()
        try:
            poller.register(fd, select.POLLIN | select.POLLPRI)
            if poller.poll(0):
                return None   # unread: maybe a notification; the thread will count it
        except (OSError, ValueError):
            return None       # the connection is going away under us
        # Read after the socket was seen empty: whatever was taken off it
        # before then has already moved the generation on.
        with self._lock:
            return self.generation if self._fd is not None else None

    def start(self):
        self._thread = threading.Thread(target=self._run, name="revocation-listener",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout=10):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _bump(self, fd):
        with self._lock:
            self.generation += 1
            self._fd = fd

    def _run(self):
        quiet = False  # one warning per outage, not one per attempt
        while not self._stop.is_set():
            conn = None
            try:
                conn = self._connect()
                quiet = False
                self._listen(conn)
            except Exception as exc:
                if not self._stop.is_set() and not quiet:
                    LOG.warning("token cache off until the revocation listener is back: %s",
                                str(exc).strip())
                    quiet = True
            finally:
                self._bump(None)
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:
                        pass
            self._stop.wait(self.retry_seconds)

    def _connect(self):
        # psycopg2's notification API (notifies, poll) whatever driver the
        # engine's URL names: this one connection is opened with psycopg2.
        dialect = self._psycopg2
        cargs, cparams = dialect.create_connect_args(
            self.db.engine.url.set(drivername="postgresql+psycopg2"))
        params = dict(KEEPALIVE, **cparams)
        params["application_name"] = APP_NAME  # no number: nothing confirmed yet
        conn = dialect.dbapi.connect(*cargs, **params)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT tgname FROM pg_trigger WHERE tgname = ANY(%s)",
                            (list(TRIGGERS),))
                missing = set(TRIGGERS) - {r[0] for r in cur.fetchall()}
                if missing:
                    raise RuntimeError("the database lacks the triggers %s that announce "
                                       "revocations: run mininova-manage db sync"
                                       % ", ".join(sorted(missing)))
                cur.execute('LISTEN "%s"' % CHANNEL)
                # Committed after this read: notified to us. Before: covered by
                # the generation moving on below, after the read.
                cur.execute("SELECT n FROM auth_epoch WHERE id = 1")
                seen = cur.fetchone()[0]
            self.backend_pid = conn.get_backend_pid()
            self._bump(conn.fileno())
            self._confirm(conn, seen)
        except Exception:
            conn.close()
            raise
        self.connects += 1
        LOG.info("token cache on: listening for revocations on %s", CHANNEL)
        return conn

    def _confirm(self, conn, number):
        with conn.cursor() as cur:
            cur.execute("SELECT set_config('application_name', %s, false)",
                        ("%s %d" % (APP_NAME, number),))

    def _listen(self, conn):
        poller = select.poll()
        poller.register(conn.fileno(), _UNREAD)
        while not self._stop.is_set():
            if not conn.notifies and not poller.poll(IDLE_WAKE_SECONDS * 1000):
                continue
            self._bump(conn.fileno())  # before reading: see current()
            conn.poll()                # raises once the server has gone
            # (_confirm's own round trip may bring more: hence the loop)
            while conn.notifies:
                numbers = [int(n.payload) for n in conn.notifies if n.payload.isdigit()]
                conn.notifies.clear()
                self._bump(conn.fileno())  # after reading them, before confirming them
                if numbers:
                    self._confirm(conn, max(numbers))
