"""A revoked token is refused at once, on the real PostgreSQL: by the API
daemon (which caches identities, [api] token_cache_seconds = 10) on the very
next request after mininova-manage revoked it; in-process, by the revocation
listener and the cache across the loss of its connection (a notification sent
meanwhile is lost: no stale identity may come back when it reconnects); and
mininova-manage returns only once the listeners confirmed (or their cache
expired)."""
import os
import threading

import psycopg2
import pytest
import sqlalchemy as sa

from common import exception
from nova_manage import cmd as manage
from common.db import auth as db_auth
from common.db import migration, revocations
from common.db.revocations import RevocationListener
from common.db.session import Database
from nova_api import auth
from mininova_lab import services
from mininova_lab.stack import Stack
from tests.unit.test_token_cache import CountingDb
from mininova_lab.waiting import wait_for

pytestmark = pytest.mark.real_services("postgresql")


def manage_conf(tmp_path, db, cache_seconds):
    """A config for mininova-manage on ``db`` (it holds a password: owner only)."""
    path = str(tmp_path / "manage.conf")
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write("[DEFAULT]\nstate_path = %s\n\n[database]\nconnection = %s\n\n"
                "[api]\ntoken_cache_seconds = %s\n" % (tmp_path, db.url, cache_seconds))
    return path


@pytest.fixture
def api_stack(tmp_path):
    s = Stack(tmp_path)
    try:
        s.start(schedulers=0, compute=False)
        # The daemon runs with its cache on (else this test would prove little).
        wait_for(lambda: "token cache on: listening for revocations" in s.logs_text(), 30,
                 what="the API's revocation listener")
        yield s
    finally:
        s.stop()


@pytest.mark.real_services("rabbitmq", "postgresql", "http")
def test_the_very_next_request_after_a_revocation_is_refused(api_stack):
    s = api_stack
    url = s.url + "/v1/vms"

    def get(secret, path="/v1/vms"):
        return s.http.get(s.url + path, headers={"X-Auth-Token": secret}, timeout=10).status_code

    for i in range(5):  # not once by luck
        secret = s.token("rev%d" % i)
        assert [get(secret) for _ in range(3)] == [200] * 3  # cached after the first
        s.manage("token", "revoke", secret)
        assert get(secret) == 401, "revocation %d not seen at once" % i
    # All of a user's tokens; a deleted user.
    first, second = s.token("team"), s.token("team")
    user = "team-user%d" % s._users
    assert get(second) == 200
    s.manage("token", "revoke", "--user", user)
    assert get(second) == 401 and get(first) == 200
    assert s.manage("user", "delete", "team-user%d" % (s._users - 1))
    assert get(first) == 401
    # A role taken away in plain SQL is announced too (the triggers see every
    # change); nothing waits for the API to hear it, so the test does.
    admin = s.token("ops", role="admin")
    assert get(admin, "/v1/services") == 200
    db = Database(s.db_url)
    try:
        with db.transaction() as t:
            t.execute(sa.text("UPDATE role_assignments SET role = 'member' WHERE user_id = "
                              "(SELECT id FROM users WHERE name = :n)"),
                      {"n": "ops-user%d" % s._users})
            number = revocations.epoch(t)
        assert revocations.wait_heard(db, number, 30) == []
    finally:
        db.dispose()
    assert get(admin, "/v1/services") == 403
    assert s.http.get(url, timeout=10).status_code == 200  # the stack's own token still works


# -- the listener, in-process on a database of its own ---------------------------------------

def make_token(db, project):
    """A token of a new user. The user's role (a role assignment) is
    announced like a revocation: returns once the listeners heard it, so
    that its notification cannot arrive in the middle of a test's premise."""
    with db.transaction() as s:
        db_auth.project_create(s, project)
        db_auth.user_create(s, project + "-u", project, "member")
        secret = db_auth.token_create(s, project + "-u")
        number = revocations.epoch(s)
    assert revocations.wait_heard(db, number, 30) == []
    return secret


def revoke_unannounced(db, secret):
    """Revoke with the NOTIFY suppressed, as if it had been sent while
    nobody listened (the table's owner may disable its triggers)."""
    with db.transaction() as s:
        s.execute(sa.text("ALTER TABLE tokens DISABLE TRIGGER tokens_notify_auth"))
        db_auth.token_revoke(s, secret)
        s.execute(sa.text("ALTER TABLE tokens ENABLE TRIGGER tokens_notify_auth"))


def kill_connection(db, pid):
    with db.transaction() as s:
        assert s.scalar(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid})


@pytest.fixture
def listened(pg_db):
    listener = RevocationListener(pg_db, retry_seconds=0.2).start()
    counting = CountingDb(pg_db)
    cache = auth.TokenCache(counting, ttl=600, listener=listener)
    try:
        wait_for(lambda: listener.current() is not None, 30, what="the listener")
        yield listener, cache, counting
    finally:
        listener.stop()


def test_a_committed_revocation_is_heard_and_empties_the_cache(pg_db, listened):
    listener, cache, counting = listened
    secret = make_token(pg_db, "p1")
    cache.identity(secret)
    cache.identity(secret)
    assert counting.lookups == 1  # cached: PostgreSQL with a listener
    before = listener.current()
    with pg_db.transaction() as s:
        db_auth.token_revoke(s, secret)
    wait_for(lambda: listener.current() not in (None, before), 30, what="the notification")
    with pytest.raises(exception.Unauthorized):
        cache.identity(secret)


def test_after_the_listener_reconnects_no_stale_identity_is_served(pg_db, listened):
    listener, cache, counting = listened
    secret = make_token(pg_db, "p1")
    cache.identity(secret)
    revoke_unannounced(pg_db, secret)
    assert cache.identity(secret)  # the premise: unannounced, the cache cannot know
    assert counting.lookups == 1
    kill_connection(pg_db, listener.backend_pid)  # as a database restart does
    wait_for(lambda: listener.connects >= 2 and listener.current() is not None, 30,
             what="the listener to reconnect")
    with pytest.raises(exception.Unauthorized):
        cache.identity(secret)


def test_while_the_listener_is_disconnected_nothing_is_cached(pg_db, listened):
    listener, cache, counting = listened
    listener.retry_seconds = 3600  # stays down once down (stop() still ends it)
    secret = make_token(pg_db, "p1")
    kill_connection(pg_db, listener.backend_pid)
    wait_for(lambda: listener.current() is None, 30, what="the listener to notice")
    for _ in range(3):
        cache.identity(secret)
    assert counting.lookups == 3
    revoke_unannounced(pg_db, secret)
    with pytest.raises(exception.Unauthorized):
        cache.identity(secret)


def test_without_the_triggers_the_listener_never_vouches_for_the_cache(caplog):
    name = "mininova_t_" + os.urandom(4).hex()
    services.create_database(name)
    db = None
    try:
        migration.db_sync(services.db_url(name), revision="0006")  # before the triggers
        db = Database(services.db_url(name))
        listener = RevocationListener(db, retry_seconds=0.2).start()
        try:
            wait_for(lambda: "mininova-manage db sync" in caplog.text, 30,
                     what="the listener's complaint")
            assert listener.current() is None and listener.connects == 0
        finally:
            listener.stop()
    finally:
        if db is not None:
            db.dispose()
        services.drop_database(name)


def test_manage_returns_only_once_the_api_has_heard_the_revocation(pg_db, listened, tmp_path,
                                                                   capsys):
    listener, cache, _ = listened
    secret = make_token(pg_db, "p1")
    cache.identity(secret)
    gate = threading.Event()
    confirm = listener._confirm

    def slow_confirm(conn, number):  # an API busy elsewhere before it confirms
        assert gate.wait(30)
        confirm(conn, number)
    listener._confirm = slow_confirm
    codes = []
    revoker = threading.Thread(target=lambda: codes.append(manage.main(
        ["--config-file", manage_conf(tmp_path, pg_db, 600), "token", "revoke", secret])))
    revoker.start()
    revoker.join(0.5)
    assert revoker.is_alive() and not codes  # waiting for the API's word
    gate.set()
    revoker.join(30)
    assert codes == [0]
    with pytest.raises(exception.Unauthorized):
        cache.identity(secret)
    assert "warning" not in capsys.readouterr().err


def test_manage_names_an_api_that_never_confirms(pg_db, tmp_path, capsys):
    secret = make_token(pg_db, "p1")
    mute = psycopg2.connect(pg_db.engine.url.set(drivername="postgresql").render_as_string(
                                hide_password=False),
                            application_name=revocations.APP_NAME + " 0")
    try:
        assert revocations.listeners(pg_db) == {mute.get_backend_pid(): 0}
        # It waits until the cache of that API has expired: token_cache_seconds + 1 s.
        assert manage.main(["--config-file", manage_conf(tmp_path, pg_db, 0.5),
                            "token", "revoke", secret]) == 0
        err = capsys.readouterr().err
        assert "did not confirm" in err and str(mute.get_backend_pid()) in err
    finally:
        mute.close()
