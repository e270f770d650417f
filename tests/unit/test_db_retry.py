"""A lost database connection: its classification by phase, when a
transaction is run again, and what the API answers (common/db/retry.py,
common/db/session.py). The connection is lost by raising what psycopg2 raises
through SQLAlchemy's own hooks; the real thing (kill -9 of PostgreSQL under
load) is tests/functional/test_pg_failover.py."""
import pytest
import sqlalchemy as sa
from sqlalchemy import event, exc, orm

from common import exception
from common.db import retry
from common.db import session as session_module
from common.db.session import Database
from nova_api.app import create_app
from tests.unit.conftest import token_for


class PgError(Exception):
    """What psycopg2 raises: a message and maybe a SQLSTATE."""

    def __init__(self, text, pgcode=None):
        super().__init__(text)
        self.pgcode = pgcode


class Pg3Error(Exception):
    """What psycopg 3 raises: its SQLSTATE is ``sqlstate``."""

    def __init__(self, text, sqlstate=None):
        super().__init__(text)
        self.sqlstate = sqlstate


def lost(text="server closed the connection unexpectedly"):
    return exc.OperationalError("COMMIT", {}, PgError(text))


class Clock:
    """A clock that only the sleeps move."""

    def __init__(self):
        self.now, self.sleeps = 100.0, []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.mark.parametrize("error", [
    lost(), lost("could not connect to server: Connection refused"),
    lost("FATAL:  the database system is starting up"),
    lost("FATAL:  the database system is in recovery mode"),
    exc.OperationalError("x", {}, PgError("terminating", pgcode="57P01")),
    exc.OperationalError("x", {}, PgError("?", pgcode="08006")),
    exc.OperationalError("x", {}, Pg3Error("terminating", sqlstate="57P01")),
    exc.OperationalError("x", {}, Pg3Error("consuming input failed: EOF")),
    exc.OperationalError("x", {}, Pg3Error("the connection is lost")),
])
def test_a_lost_connection_is_recognised(error):
    assert retry.is_disconnect(error)


@pytest.mark.parametrize("error", [
    exc.IntegrityError("x", {}, PgError("duplicate key value", pgcode="23505")),
    exc.OperationalError("x", {}, PgError("deadlock detected", pgcode="40P01")),
    exc.ProgrammingError("x", {}, PgError('relation "nope" does not exist', pgcode="42P01")),
    exc.IntegrityError("x", {}, Pg3Error("duplicate key value", sqlstate="23505")),
])
def test_a_refused_statement_is_not_a_lost_connection(error):
    assert not retry.is_disconnect(error)


@pytest.mark.parametrize("phase, idempotent, again", [
    (retry.CONNECT, False, True), (retry.STATEMENT, False, True),
    (retry.COMMIT, False, False), (retry.COMMIT, True, True)])
def test_what_may_be_run_again(phase, idempotent, again):
    assert retry.may_run_again(phase, idempotent) is again
    assert retry.nothing_applied(phase) is (phase != retry.COMMIT)


def test_only_a_loss_at_commit_says_the_outcome_is_unknown():
    assert retry.reason(retry.STATEMENT) == retry.reason(retry.CONNECT) == "database unreachable"
    assert "unknown" in retry.reason(retry.COMMIT)
    assert "database unreachable" in retry.reason(retry.COMMIT)  # what operators grep for


def test_backoff_doubles_with_jitter_and_stops_at_the_deadline():
    clock = Clock()
    backoff = retry.Backoff(clock, clock() + 1.0, first=0.1, longest=0.4, rand=lambda: 0.0)
    pauses = []
    while (pause := backoff.pause()) is not None:
        pauses.append(pause)
        clock.sleep(pause)
    assert pauses == pytest.approx([0.1, 0.2, 0.4, 0.3])  # the last one cut at the deadline
    halved = retry.Backoff(clock, clock() + 10, first=0.2, rand=lambda: 1.0)
    assert halved.pause() == pytest.approx(0.1)


# -- transactions on a database whose connection is lost -------------------------

@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def tdb(tmp_path, clock):
    db = Database("sqlite:///%s" % (tmp_path / "t.db"), retry_seconds=2.0, clock=clock,
                  sleep=clock.sleep)
    with db.engine.begin() as c:
        c.exec_driver_sql("CREATE TABLE t (x INTEGER PRIMARY KEY)")
    yield db
    db.dispose()


def rows(db):
    with db.engine.connect() as c:
        return sorted(c.exec_driver_sql("SELECT x FROM t").scalars())


def wrote(conn):
    return conn.info.get(session_module._WROTE)


def lose_commits(db, times, reads=False, match=None):
    """The next ``times`` COMMITs of transactions that wrote (or, with
    ``reads``, of any; with ``match``, that ran a statement starting so) lose
    their connection (before the server commits, which the caller cannot tell
    from after)."""
    left = [times]

    @event.listens_for(db.engine, "before_cursor_execute")
    def statement(conn, cursor, text, *args):
        if match is not None and text.lstrip().startswith(match):
            conn.info["test_matched"] = True

    @event.listens_for(db.engine, "commit")
    def commit(conn):
        matched = conn.info.pop("test_matched", False)
        if left[0] > 0 and (matched if match is not None else reads or wrote(conn)):
            left[0] -= 1
            raise lost()


def test_a_loss_before_the_commit_is_run_again(tdb, clock):
    tries = []

    def insert(s):
        tries.append(1)
        s.execute(sa.text("INSERT INTO t VALUES (:x)"), {"x": len(tries)})
        if len(tries) == 1:
            raise lost()  # as psycopg2 when the server dies mid-transaction
        return "done"

    assert tdb.run(insert) == "done"
    assert len(tries) == 2 and rows(tdb) == [2]  # the first try left nothing
    assert len(clock.sleeps) == 1


def test_a_loss_at_commit_is_reported_not_retried(tdb):
    lose_commits(tdb, 1)
    tries = []

    def insert(s):
        tries.append(1)
        s.execute(sa.text("INSERT INTO t VALUES (1)"))

    with pytest.raises(exception.DatabaseUnavailable) as raised:
        tdb.run(insert)
    assert raised.value.phase == retry.COMMIT and "unknown" in raised.value.message
    assert isinstance(raised.value, exception.ServiceUnavailable)  # 503, daemons retry
    assert len(tries) == 1


def test_an_idempotent_transaction_is_run_again_after_a_loss_at_commit(tdb):
    lose_commits(tdb, 2)
    tries = []

    def insert_once(s):
        tries.append(1)
        if not s.execute(sa.text("SELECT 1 FROM t WHERE x = 7")).first():
            s.execute(sa.text("INSERT INTO t VALUES (7)"))

    tdb.run(insert_once, idempotent=True)
    assert len(tries) == 3 and rows(tdb) == [7]


def test_a_read_only_transaction_keeps_what_it_read_when_its_commit_is_lost(tdb):
    with tdb.transaction() as s:
        s.execute(sa.text("INSERT INTO t VALUES (4)"))
    lose_commits(tdb, 1, reads=True)
    with tdb.transaction() as s:
        seen = s.execute(sa.text("SELECT x FROM t")).scalars().all()
    assert seen == [4]
    with tdb.transaction() as s:  # the connection is usable (rolled back)
        s.execute(sa.text("INSERT INTO t VALUES (5)"))
    assert rows(tdb) == [4, 5]


def test_the_retries_end_at_retry_seconds(tdb, clock):
    tries = []

    def never(s):
        tries.append(1)
        raise lost()

    with pytest.raises(exception.DatabaseUnavailable) as raised:
        tdb.run(never)
    assert raised.value.phase == retry.STATEMENT
    assert raised.value.message == "Service unavailable: database unreachable"
    assert sum(clock.sleeps) == pytest.approx(2.0) and len(tries) == len(clock.sleeps) + 1


def test_transaction_phases_and_other_errors(tdb):
    with pytest.raises(exception.DatabaseUnavailable) as raised:
        with tdb.transaction() as s:
            s.execute(sa.text("INSERT INTO t VALUES (1)"))
            raise lost()
    assert raised.value.phase == retry.STATEMENT
    lose_commits(tdb, 1)
    with pytest.raises(exception.DatabaseUnavailable) as raised:
        with tdb.transaction() as s:
            s.execute(sa.text("INSERT INTO t VALUES (2)"))
    assert raised.value.phase == retry.COMMIT
    assert rows(tdb) == []
    with tdb.transaction() as s:
        s.execute(sa.text("INSERT INTO t VALUES (3)"))
    with pytest.raises(exc.IntegrityError):  # a refusal is not an outage: not retried
        tdb.run(lambda s: s.execute(sa.text("INSERT INTO t VALUES (3)")))
    with pytest.raises(exception.NotFound):  # the body's own errors pass through
        with tdb.transaction():
            raise exception.NotFound()
    assert rows(tdb) == [3]


def test_connecting_is_retried_until_retry_seconds(clock):
    """Nothing listens on port 1: refused at every try."""
    db = Database("postgresql+psycopg2://u:p@127.0.0.1:1/x", retry_seconds=1.5, clock=clock,
                  sleep=clock.sleep)
    try:
        with pytest.raises(exception.DatabaseUnavailable) as raised:
            with db.transaction():
                pass
    finally:
        db.dispose()
    assert raised.value.phase == retry.CONNECT
    assert len(clock.sleeps) >= 3 and sum(clock.sleeps) == pytest.approx(1.5)


def test_the_api_answers_503_naming_an_unknown_outcome(conf, db, image, recorder):
    conductor = recorder()
    api = create_app(conf, db, conductor, recorder()).test_client()
    api.environ_base["HTTP_X_AUTH_TOKEN"] = token_for(db, "default")
    lose_commits(db, 1)
    r = api.post("/v1/vms", json={"name": "web1", "image": "blank", "flavor": "m1.tiny"})
    assert r.status_code == 503, r.get_json()
    assert "whether the change was made is unknown" in r.get_json()["error"]["message"]
    assert conductor.calls == []  # no build cast for a VM that may not exist
    assert api.get("/v1/vms").get_json()["vms"] == []
    r = api.post("/v1/vms", json={"name": "web1", "image": "blank", "flavor": "m1.tiny"})
    assert r.status_code == 202


def test_the_api_runs_a_create_again_that_lost_its_connection_before_the_commit(
        conf, db, image, recorder):
    conductor = recorder()
    api = create_app(conf, db, conductor, recorder()).test_client()
    api.environ_base["HTTP_X_AUTH_TOKEN"] = token_for(db, "default")
    left = [1]

    @event.listens_for(db.engine, "before_cursor_execute")
    def lose_the_insert(conn, cursor, statement, *args):
        if statement.startswith("INSERT INTO instances") and left[0]:
            left[0] -= 1
            raise lost("could not receive data from server: Connection reset by peer")

    r = api.post("/v1/vms", json={"name": "web1", "image": "blank", "flavor": "m1.tiny"})
    assert r.status_code == 202, r.get_json()
    [vm] = api.get("/v1/vms").get_json()["vms"]
    assert [args for _, args, _ in conductor.calls] == [(vm["id"],)]


def lose_answers_to_commits(db, times, match=None):
    """The next ``times`` COMMITs of transactions that wrote (with ``match``:
    ran a statement starting so) are made, and their answer lost."""
    left, chosen = [times], [False]

    def statement(conn, cursor, text, *args):
        if match is not None and text.lstrip().startswith(match):
            conn.info["test_matched"] = True

    def commit(conn):
        chosen[0] = bool(conn.info.pop("test_matched", False) if match is not None
                         else wrote(conn))

    def after_commit(session):
        if left[0] > 0 and chosen[0]:
            left[0] -= 1
            raise lost()
    event.listen(db.engine, "before_cursor_execute", statement)
    event.listen(db.engine, "commit", commit)
    event.listen(orm.Session, "after_commit", after_commit)

    def restore():
        event.remove(orm.Session, "after_commit", after_commit)
        event.remove(db.engine, "commit", commit)
        event.remove(db.engine, "before_cursor_execute", statement)
    return restore


@pytest.fixture
def keyed_api(conf, db, image, recorder):
    conductor = recorder()
    api = create_app(conf, db, conductor, recorder()).test_client()
    api.environ_base["HTTP_X_AUTH_TOKEN"] = token_for(db, "default")
    api.conductor = conductor
    return api


def post(api, key=None):
    return api.post("/v1/vms", json={"name": "web1", "image": "blank", "flavor": "m1.tiny"},
                    headers={"X-Idempotency-Key": key} if key else {})


def test_a_keyed_create_whose_commit_was_lost_is_run_again(keyed_api, db):
    lose_commits(db, 1)
    r = post(keyed_api, key="k1")
    assert r.status_code == 202, r.get_json()
    [vm] = keyed_api.get("/v1/vms").get_json()["vms"]
    assert [args for _, args, _ in keyed_api.conductor.calls] == [(vm["id"],)]


def test_a_keyed_create_whose_commit_was_made_is_found_by_its_key(keyed_api, db):
    """The answer to COMMIT lost after the server made it: run again, the
    create finds its key held by its own VM, and casts the build it had not."""
    restore = lose_answers_to_commits(db, 1, match="INSERT INTO instances")
    try:
        r = post(keyed_api, key="k2")
    finally:
        restore()
    assert r.status_code == 202, r.get_json()
    [vm] = keyed_api.get("/v1/vms").get_json()["vms"]
    assert r.get_json()["vm"]["id"] == vm["id"]
    [(method, args, kwargs)] = keyed_api.conductor.calls
    assert (method, args) == ("build_instances", (vm["id"],))
    with db.transaction() as s:
        created = s.execute(sa.text("SELECT id FROM instance_actions WHERE instance_id = :i "
                                    "AND action = 'create'"), {"i": vm["id"]}).scalar_one()
    assert kwargs["action_id"] == created


def test_an_unkeyed_create_whose_commit_was_made_says_the_outcome_is_unknown(keyed_api, db):
    restore = lose_answers_to_commits(db, 1, match="INSERT INTO instances")
    try:
        r = post(keyed_api)
    finally:
        restore()
    assert r.status_code == 503 and "unknown" in r.get_json()["error"]["message"]
    # It was made: in BUILD, waiting for the conductor's watchdog to cast its build.
    [vm] = keyed_api.get("/v1/vms").get_json()["vms"]
    assert vm["status"] == "BUILD" and keyed_api.conductor.calls == []


def test_a_delete_whose_commit_answer_was_lost_is_run_again(conf, db, image, recorder, caplog):
    """Marking a VM deleting twice is harmless: run again, answered 202."""
    compute = recorder()
    api = create_app(conf, db, recorder(), compute).test_client()
    api.environ_base["HTTP_X_AUTH_TOKEN"] = token_for(db, "default")
    vm = post(api).get_json()["vm"]
    with db.transaction() as s:
        s.execute(sa.text("UPDATE instances SET host = 'h1', vm_state = 'active', "
                          "task_state = NULL WHERE id = :i"), {"i": vm["id"]})
    restore = lose_answers_to_commits(db, 1, match="UPDATE instances SET task_state")
    try:
        r = api.delete("/v1/vms/" + vm["id"])
    finally:
        restore()
    assert r.status_code == 202, r.get_json()
    assert [(m, a[:2]) for m, a, _ in compute.calls] == [("terminate_instance", ("h1", vm["id"]))]
    assert api.get("/v1/vms/" + vm["id"]).get_json()["vm"]["task_state"] == "deleting"
    assert "database connection lost (commit)" in caplog.text  # it was this one, run again


def test_what_a_read_only_transaction_read_stays_loaded_when_its_commit_is_lost(keyed_api, db):
    """Its ORM objects are used after the transaction: not expired by a
    rollback (they could not be loaded again, detached)."""
    vm = post(keyed_api).get_json()["vm"]
    lose_commits(db, 1, match="SELECT instances.")
    r = keyed_api.get("/v1/vms/" + vm["id"])
    assert r.status_code == 200, r.get_json()
    lose_commits(db, 1, match="SELECT instances.")
    r = keyed_api.delete("/v1/vms/" + vm["id"])  # reads the row, then uses it
    assert r.status_code == 202, r.get_json()
