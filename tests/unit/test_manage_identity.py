"""mininova-manage for the identity API: users with passwords (read from
stdin, never from the command line), disabling, roles in several projects;
the commands that were there keep working."""
import io
import json
import sys

import pytest
import sqlalchemy as sa

from common.db import auth as db_auth
from common.db.models import RoleAssignment, Token, User
from nova_api.app import create_app
from nova_manage import cmd as manage
from tests.unit.conftest import TEST_PASSWORD_COST, password_auth

TOKENS = "/identity/v3/auth/tokens"


@pytest.fixture
def run(conf, db, tmp_path, monkeypatch, capsys):
    """``run(*args, stdin=None)`` -> (exit code, the JSON lines it printed, stderr);
    ``run.out``: its whole stdout."""
    path = tmp_path / "manage.conf"
    path.write_text("[DEFAULT]\nstate_path = %s\n\n[identity]\npassword_hash_cost = %d\n"
                    % (conf.state_path, TEST_PASSWORD_COST))

    def run(*args, stdin=None):
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin or ""))
        code = manage.main(["--config-file", str(path), *args])
        out, err = capsys.readouterr()
        run.out = out
        return code, [json.loads(line) for line in out.splitlines() if line.startswith("{")], err
    return run


@pytest.fixture
def client(conf, db, recorder):
    conf.set_override("password_hash_cost", TEST_PASSWORD_COST, group="identity")
    return create_app(conf, db, recorder(), recorder()).test_client()


def login(client, name, password="p", project=None):
    return client.post(TOKENS, json=password_auth(name, password=password, project=project))


def test_user_create_with_a_password_from_stdin(run, client, db):
    assert run("project", "create", "demo")[0] == 0
    code, (user,), _ = run("user", "create", "u", "--project", "demo", "--role", "member",
                           "--password-stdin", stdin="s3cret with spaces\n")
    assert code == 0 and user["role"] == "member" and user["password"] is True
    with db.transaction() as s:
        stored = s.scalar(sa.select(User.password_hash).where(User.name == "u"))
    assert stored.startswith("scrypt$%d$" % TEST_PASSWORD_COST) and "s3cret" not in stored
    assert login(client, "u", "s3cret with spaces").status_code == 201
    assert login(client, "u", "s3cret with spaces\n").status_code == 401


def test_the_password_is_never_an_argument(run):
    """No option of any command takes a password as its value (ps shows argv)."""
    def actions(parser):
        for action in parser._actions:
            yield action
            if isinstance(action.choices, dict):  # subcommands
                for sub in action.choices.values():
                    yield from actions(sub)
    options = [a for a in actions(manage._parser())
               if any("password" in option for option in a.option_strings)]
    assert [a.option_strings for a in options] == [["--password-stdin"]]
    assert all(a.nargs == 0 for a in options)
    run("project", "create", "demo")
    code, _, err = run("user", "create", "u", "--project", "demo", "--password-stdin", stdin="")
    assert code == 1 and "empty password" in err


def test_users_without_a_password_keep_working_with_manage_tokens(run, client):
    run("project", "create", "demo")
    code, (user,), _ = run("user", "create", "old", "--project", "demo")
    assert code == 0 and user["password"] is False and user["role"] == "member"
    secret = manage_token(run, "old")
    assert client.get("/v1/vms", headers={"X-Auth-Token": secret}).status_code == 200
    assert login(client, "old", "").status_code == 401


def manage_token(run, user):
    assert run("token", "create", user)[0] == 0
    return run.out.strip()


def test_set_password_revokes_the_users_tokens(run, client):
    run("project", "create", "demo")
    run("user", "create", "u", "--project", "demo", "--password-stdin", stdin="old\n")
    secret = login(client, "u", "old").headers["X-Subject-Token"]
    code, (out,), _ = run("user", "set-password", "u", stdin="new\n")
    assert code == 0 and out["revoked"] == 1
    assert client.get("/v1/vms", headers={"X-Auth-Token": secret}).status_code == 401
    assert login(client, "u", "old").status_code == 401
    assert login(client, "u", "new").status_code == 201
    assert run("user", "set-password", "nobody", stdin="x\n")[0] == 1


def test_disable_and_enable(run, client):
    run("project", "create", "demo")
    run("user", "create", "u", "--project", "demo", "--password-stdin", stdin="p\n")
    secret = login(client, "u").headers["X-Subject-Token"]
    code, (out,), _ = run("user", "disable", "u")
    assert code == 0 and out == {"user": "u", "enabled": False, "revoked": 1}
    assert client.get("/v1/vms", headers={"X-Auth-Token": secret}).status_code == 401
    assert login(client, "u").status_code == 401
    assert run("user", "enable", "u")[0] == 0
    assert client.get("/v1/vms", headers={"X-Auth-Token": secret}).status_code == 401
    assert login(client, "u").status_code == 201
    (listed,) = run("user", "list")[1]
    assert listed["enabled"] is True and listed["roles"] == {"demo": ["member"]}


def test_roles_in_several_projects(run, client, db):
    for project in ("demo", "ops"):
        run("project", "create", project)
    run("user", "create", "u", "--project", "demo", "--role", "reader", "--password-stdin",
        stdin="p\n")
    assert login(client, "u", project="ops").status_code == 401
    code, (out,), _ = run("role", "add", "admin", "--user", "u", "--project", "ops")
    assert code == 0 and out["added"] is True
    assert run("role", "add", "admin", "--user", "u", "--project", "ops")[1][0]["added"] is False
    admin = login(client, "u", project="ops").headers["X-Subject-Token"]
    assert client.get("/v1/services", headers={"X-Auth-Token": admin}).status_code == 200
    reader = login(client, "u", project="demo").headers["X-Subject-Token"]
    assert client.post("/v1/server-groups", json={"name": "g", "policy": "affinity"},
                       headers={"X-Auth-Token": reader}).status_code == 403
    (listed,) = run("user", "list")[1]
    assert listed["roles"] == {"demo": ["reader"], "ops": ["admin"]}
    code, _, _ = run("role", "remove", "admin", "--user", "u", "--project", "ops")
    assert code == 0
    assert client.get("/v1/services", headers={"X-Auth-Token": admin}).status_code == 401
    # The last role stays; unknown ones are named.
    code, _, err = run("role", "remove", "reader", "--user", "u", "--project", "demo")
    assert code == 1 and "only role" in err
    code, _, err = run("role", "remove", "member", "--user", "u", "--project", "demo")
    assert code == 1 and "has no role member" in err
    assert run("role", "add", "admin", "--user", "nobody", "--project", "ops")[0] == 1
    assert run("role", "add", "admin", "--user", "u", "--project", "nowhere")[0] == 1
    with pytest.raises(SystemExit):
        manage.main(["role", "add", "root", "--user", "u", "--project", "ops"])


def test_user_delete_takes_its_roles_and_tokens(run, client, db):
    run("project", "create", "demo")
    run("user", "create", "u", "--project", "demo", "--password-stdin", stdin="p\n")
    secret = login(client, "u").headers["X-Subject-Token"]
    assert run("user", "delete", "u")[0] == 0
    with db.transaction() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(RoleAssignment)) == 0
    assert client.get("/v1/vms", headers={"X-Auth-Token": secret}).status_code == 401
    assert login(client, "u").status_code == 401


def test_token_flush_deletes_only_expired_tokens(run, client, db):
    run("project", "create", "demo")
    run("user", "create", "u", "--project", "demo", "--password-stdin", stdin="p\n")
    old, new = (login(client, "u").headers["X-Subject-Token"] for _ in range(2))
    with db.transaction() as s:
        s.execute(sa.update(Token).where(Token.secret_sha256 == db_auth.token_hash(old))
                  .values(expires_at=sa.func.datetime("2000-01-01")))
    assert run("token", "flush")[1] == [{"flushed": 1}]
    assert client.get("/v1/vms", headers={"X-Auth-Token": new}).status_code == 200
