"""Token revocation takes effect at once: the API's token cache trusts an
entry only while the revocation listener vouches for it (the listener itself,
on a real PostgreSQL, is in tests/functional/test_token_revocation.py)."""
import contextlib
import datetime
import io
import sys

import pytest

from common import exception
from nova_manage import cmd as manage
from common.db import auth as db_auth
from common.db.models import utcnow
from nova_api import auth
from nova_api.app import create_app
from tests.unit.conftest import token_for


class CountingDb:
    """The real database, counting token lookups; ``during_lookup`` runs
    inside each (to change the world while the cache is reading it)."""

    def __init__(self, db):
        self.db = db
        self.lookups = 0
        self.during_lookup = None

    @contextlib.contextmanager
    def transaction(self):
        self.lookups += 1
        with self.db.transaction() as s:
            if self.during_lookup:
                self.during_lookup()
            yield s


class FakeListener:
    """What a RevocationListener tells the cache: a generation, or None
    while it is not connected."""

    def __init__(self):
        self.generation = 1
        self.connected = True

    def current(self):
        return self.generation if self.connected else None


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def counting(db):
    return CountingDb(db)


def revoke(db, secret):
    with db.transaction() as s:
        db_auth.token_revoke(s, secret)


def test_without_a_listener_every_request_reads_the_db(db, counting):
    cache = auth.TokenCache(counting, ttl=10, listener=None)
    secret = token_for(db, "p1")
    assert cache.identity(secret)[1] == "p1"
    assert cache.identity(secret)[1] == "p1"
    assert counting.lookups == 2
    revoke(db, secret)
    with pytest.raises(exception.Unauthorized):
        cache.identity(secret)


def test_a_listened_cache_answers_from_memory_until_the_generation_moves(db, counting):
    listener = FakeListener()
    cache = auth.TokenCache(counting, ttl=10, listener=listener)
    secret = token_for(db, "p1")
    for _ in range(3):
        assert cache.identity(secret)[1] == "p1"
    assert counting.lookups == 1
    revoke(db, secret)
    listener.generation += 1  # the NOTIFY of that commit arrived
    with pytest.raises(exception.Unauthorized):
        cache.identity(secret)


def test_nothing_is_trusted_or_stored_while_the_listener_is_not_connected(db, counting):
    listener = FakeListener()
    cache = auth.TokenCache(counting, ttl=10, listener=listener)
    secret = token_for(db, "p1")
    cache.identity(secret)
    listener.connected = False
    cache.identity(secret)
    cache.identity(secret)
    assert counting.lookups == 3
    revoke(db, secret)   # its NOTIFY is lost: nobody listens
    listener.connected, listener.generation = True, listener.generation + 1  # reconnected
    with pytest.raises(exception.Unauthorized):
        cache.identity(secret)


def test_a_revocation_heard_during_the_lookup_keeps_its_result_out_of_the_cache(db, counting):
    """The lookup read the token valid; a revocation committed and was heard
    before the result was stored: it must not be stored as current."""
    listener = FakeListener()
    cache = auth.TokenCache(counting, ttl=10, listener=listener)
    secret = token_for(db, "p1")

    def revoked_meanwhile():
        counting.during_lookup = None
        listener.generation += 1
    counting.during_lookup = revoked_meanwhile
    cache.identity(secret)  # valid when it was read
    revoke(db, secret)
    with pytest.raises(exception.Unauthorized):
        cache.identity(secret)


def test_entries_expire_after_the_ttl_and_with_their_token(db, counting):
    clock = Clock()
    cache = auth.TokenCache(counting, ttl=10, listener=FakeListener(), clock=clock)
    secret = token_for(db, "p1")
    cache.identity(secret)
    clock.now += 9.9
    cache.identity(secret)
    assert counting.lookups == 1
    clock.now += 0.2
    cache.identity(secret)
    assert counting.lookups == 2
    with db.transaction() as s:  # a token that expires in 3 s
        soon = db_auth.token_create(s, _user_name(s, "p1"),
                                    expires_at=utcnow() + datetime.timedelta(seconds=3))
    cache.identity(soon)
    clock.now += 2.5
    cache.identity(soon)
    assert counting.lookups == 3
    clock.now += 1.0  # past its expiry: never answered from memory
    cache.identity(soon)
    assert counting.lookups == 4


def _user_name(s, project):
    from common.db.models import User
    return s.query(User).filter_by(project_id=project).first().name


def test_a_ttl_of_zero_caches_nothing(db, counting):
    cache = auth.TokenCache(counting, ttl=0, listener=FakeListener())
    secret = token_for(db, "p1")
    cache.identity(secret)
    cache.identity(secret)
    assert counting.lookups == 2


def test_the_api_refuses_a_revoked_token_on_the_next_request(conf, db, recorder):
    """On SQLite (no listener) the API caches nothing: the request right after
    the revocation is a 401, whatever [api] token_cache_seconds says."""
    client = create_app(conf, db, recorder(), recorder()).test_client()
    secret = token_for(db, "p1")
    headers = {"X-Auth-Token": secret}
    assert client.get("/v1/vms", headers=headers).status_code == 200
    revoke(db, secret)
    r = client.get("/v1/vms", headers=headers)
    assert r.status_code == 401 and "invalid token" in r.get_json()["error"]["message"]


# -- the revoking commands ------------------------------------------------------------------

@pytest.fixture
def manage_conf(conf, db, tmp_path):
    path = tmp_path / "manage.conf"
    path.write_text("[DEFAULT]\nstate_path = %s\n" % conf.state_path)
    return str(path)


def identity_or_none(db, secret):
    with db.transaction() as s:
        try:
            return db_auth.token_lookup(s, secret)
        except exception.Unauthorized:
            return None


def test_manage_token_revoke_by_secret_from_stdin_or_by_user(db, manage_conf, capsys,
                                                             monkeypatch):
    one, two = token_for(db, "p1"), token_for(db, "p1")
    with db.transaction() as s:
        user = _user_name(s, "p1")
        three = db_auth.token_create(s, user)
    assert manage.main(["--config-file", manage_conf, "token", "revoke", one]) == 0
    assert identity_or_none(db, one) is None and identity_or_none(db, two) is not None
    monkeypatch.setattr(sys, "stdin", io.StringIO(two + "\n"))  # kept out of ps
    assert manage.main(["--config-file", manage_conf, "token", "revoke", "-"]) == 0
    assert identity_or_none(db, two) is None
    assert manage.main(["--config-file", manage_conf, "token", "revoke", one]) == 1  # gone
    assert manage.main(["--config-file", manage_conf, "token", "revoke", "--user", user]) == 0
    assert identity_or_none(db, three) is None
    assert manage.main(["--config-file", manage_conf, "token", "revoke"]) == 1  # which one?
    out = capsys.readouterr()
    assert '{"revoked": 1}' in out.out and "No such token" in out.err


def test_manage_user_delete_takes_its_tokens(db, manage_conf, capsys):
    secret = token_for(db, "p1")
    with db.transaction() as s:
        user = _user_name(s, "p1")
    assert manage.main(["--config-file", manage_conf, "user", "delete", user]) == 0
    assert identity_or_none(db, secret) is None
    assert manage.main(["--config-file", manage_conf, "user", "delete", user]) == 1
    assert '"revoked": 1' in capsys.readouterr().out
