"""``mininova-manage``: database, images and flavors, for the operator."""
import argparse
import getpass
import json
import sys

from oslo_config import cfg

from common import config, exception, passwords
from nova_api import imagestore
from nova_manage import audit, rabbit_migrate
from common.db import api as db_api
from common.db import auth as db_auth
from common.db import identity, migration, revocations
from common.db.session import Database
from nova_manage.doctor import command as doctor_command


def _db(conf):
    return Database(config.database_url(conf))


def db_sync(conf, args):
    migration.db_sync(config.database_url(conf))
    print("database at revision %s" % migration.db_version(config.database_url(conf)))


def image_add(conf, args):
    stored = imagestore.import_file(conf, args.path)
    try:
        with _db(conf).transaction() as s:
            image = db_api.image_create(s, id=stored.image_id, name=args.name,
                                        disk_format="qcow2", min_ram=args.min_ram,
                                        min_disk=args.min_disk, status="active",
                                        **stored.columns())
    except Exception:
        imagestore.remove(stored.path)  # nothing left behind
        raise
    print(json.dumps({"id": image.id, "name": image.name, "size": stored.size,
                      "checksum": stored.checksum}))


def image_list(conf, args):
    with _db(conf).transaction() as s:
        for image in db_api.image_list(s):
            # Glance's images may have no name or data yet.
            print("%s  %-20s %10s  %s" % (image.id, image.name or "", image.size or "-",
                                          image.checksum or "-"))


def flavor_create(conf, args):
    with _db(conf).transaction() as s:
        flavor = db_api.flavor_create(s, args.name, args.vcpus, args.ram, args.disk)
    print(json.dumps({"id": flavor.id, "name": flavor.name}))


def flavor_list(conf, args):
    with _db(conf).transaction() as s:
        for f in db_api.flavor_list(s):
            print("%-36s %-12s vcpus=%d ram=%dMB disk=%dGB" % (f.id, f.name, f.vcpus,
                                                            f.memory_mb, f.root_gb))


def project_create(conf, args):
    with _db(conf).transaction() as s:
        project = db_auth.project_create(s, args.name)
    print(json.dumps({"id": project.id, "name": project.name}))


def _read_password():
    """The password, from stdin (never argv, which ps shows): its first line
    without the line break; on a terminal, asked for twice without echo."""
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat it: ") != password:
            raise exception.Invalid(reason="the two passwords differ")
    else:
        password = sys.stdin.readline()
        password = password[:-1] if password.endswith("\n") else password
        password = password[:-1] if password.endswith("\r") else password
    if not password:
        raise exception.Invalid(reason="empty password (give it on stdin)")
    if "\x00" in password or len(password) > passwords.MAX_PASSWORD_CHARS:
        raise exception.Invalid(reason="a password has 1-%d characters, no NUL"
                                % passwords.MAX_PASSWORD_CHARS)
    return password


def _hash(conf, password):
    return passwords.hash_password(password, conf.identity.password_hash_cost)


def user_create(conf, args):
    password_hash = _hash(conf, _read_password()) if args.password_stdin else None
    with _db(conf).transaction() as s:
        user = db_auth.user_create(s, args.name, args.project, args.role,
                                   password_hash=password_hash)
    print(json.dumps({"id": user.id, "name": user.name, "project_id": user.project_id,
                      "role": args.role, "password": password_hash is not None}))


def user_list(conf, args):
    with _db(conf).transaction() as s:
        for user, roles in identity.user_list(s):
            print(json.dumps({"id": user.id, "name": user.name, "project_id": user.project_id,
                              "enabled": user.enabled,
                              "password": user.password_hash is not None, "roles": roles}))


def user_set_password(conf, args):
    """A new password; the user's tokens are revoked (as in Keystone)."""
    password_hash = _hash(conf, _read_password())
    revoked = _revoke(conf, lambda s: identity.user_set_password(s, args.name, password_hash))
    print(json.dumps({"user": args.name, "revoked": revoked}))


def user_disable(conf, args):
    revoked = _revoke(conf, lambda s: identity.user_set_enabled(s, args.name, False))
    print(json.dumps({"user": args.name, "enabled": False, "revoked": revoked}))


def user_enable(conf, args):
    with _db(conf).transaction() as s:
        identity.user_set_enabled(s, args.name, True)
    print(json.dumps({"user": args.name, "enabled": True}))


def role_add(conf, args):
    # Announced like a revocation: the API's cached tokens get the role at once.
    added = _revoke(conf, lambda s: identity.role_add(s, args.user, args.project, args.role))
    print(json.dumps({"user": args.user, "project": args.project, "role": args.role,
                      "added": added}))


def role_remove(conf, args):
    _revoke(conf, lambda s: identity.role_remove(s, args.user, args.project, args.role))
    print(json.dumps({"user": args.user, "project": args.project, "role": args.role,
                      "removed": True}))


def token_create(conf, args):
    """Prints the secret once: only its hash is stored."""
    with _db(conf).transaction() as s:
        secret = db_auth.token_create(s, args.user)
    print(secret)


def _revoke(conf, change):
    """``change(session)`` revokes something (or changes a role); returns
    once every API process has heard it (common/db/revocations.py), or names
    those that did not say so in time (their cached entries have expired by
    then all the same)."""
    db = _db(conf)
    try:
        with db.transaction() as s:
            result = change(s)
            number = revocations.epoch(s)
        if number is not None:
            behind = revocations.wait_heard(db, number, conf.api.token_cache_seconds + 1)
            if behind:
                print("warning: API listener(s) with PostgreSQL backend pid %s did not "
                      "confirm the revocation; waited until their cache expired"
                      % ", ".join(map(str, behind)), file=sys.stderr)
    finally:
        db.dispose()
    return result


def token_revoke(conf, args):
    if (args.secret is None) == (args.user is None):
        raise exception.Invalid(reason="give a token's secret (- reads it from stdin) or "
                                "--user NAME, not both")
    if args.user is not None:
        revoked = _revoke(conf, lambda s: db_auth.user_tokens_revoke(s, args.user))
    else:
        secret = sys.stdin.readline().strip() if args.secret == "-" else args.secret
        revoked = _revoke(conf, lambda s: db_auth.token_revoke(s, secret))
    print(json.dumps({"revoked": revoked}))


def token_flush(conf, args):
    with _db(conf).transaction() as s:  # refused already: nothing to wait for
        flushed = identity.expired_tokens_flush(s)
    print(json.dumps({"flushed": flushed}))


def user_delete(conf, args):
    revoked = _revoke(conf, lambda s: db_auth.user_delete(s, args.name))
    print(json.dumps({"deleted": args.name, "revoked": revoked}))


def quota_set(conf, args):
    limits = {r: getattr(args, r) for r in db_auth.RESOURCES if getattr(args, r) is not None}
    with _db(conf).transaction() as s:
        project = db_auth.project_get(s, args.project)
        db_auth.quota_set(s, project.id, limits)
    print(json.dumps({"project_id": project.id, "set": limits}))


def _positive(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def _parser():
    p = argparse.ArgumentParser(prog="mininova-manage")
    p.add_argument("--config-file", action="append", default=[])
    sub = p.add_subparsers(dest="group", required=True)
    db = sub.add_parser("db").add_subparsers(dest="cmd", required=True)
    db.add_parser("sync").set_defaults(fn=db_sync)
    image = sub.add_parser("image").add_subparsers(dest="cmd", required=True)
    add = image.add_parser("add")
    add.add_argument("name")
    add.add_argument("path")
    add.add_argument("--min-ram", type=int, default=0)
    add.add_argument("--min-disk", type=int, default=0)
    add.set_defaults(fn=image_add)
    image.add_parser("list").set_defaults(fn=image_list)
    flavor = sub.add_parser("flavor").add_subparsers(dest="cmd", required=True)
    create = flavor.add_parser("create")
    create.add_argument("name")
    create.add_argument("--vcpus", type=_positive, required=True)
    create.add_argument("--ram", type=_positive, required=True, help="MB")
    create.add_argument("--disk", type=_positive, required=True, help="GB")
    create.set_defaults(fn=flavor_create)
    flavor.add_parser("list").set_defaults(fn=flavor_list)
    project = sub.add_parser("project").add_subparsers(dest="cmd", required=True)
    create = project.add_parser("create")
    create.add_argument("name")
    create.set_defaults(fn=project_create)
    user = sub.add_parser("user").add_subparsers(dest="cmd", required=True)
    create = user.add_parser("create")
    create.add_argument("name")
    create.add_argument("--project", required=True)
    create.add_argument("--role", choices=db_auth.ROLES, default="member",
                        help="its role in that project (admin => member => reader)")
    create.add_argument("--password-stdin", action="store_true",
                        help="read a password from stdin, for POST /identity/v3/auth/tokens "
                             "(without: tokens from 'token create' only)")
    create.set_defaults(fn=user_create)
    user.add_parser("list", help="users, their projects and roles").set_defaults(fn=user_list)
    delete = user.add_parser("delete", help="delete a user and its tokens")
    delete.add_argument("name")
    delete.set_defaults(fn=user_delete)
    setpw = user.add_parser("set-password", help="read a new password from stdin; revokes "
                            "the user's tokens")
    setpw.add_argument("name")
    setpw.set_defaults(fn=user_set_password)
    disable = user.add_parser("disable", help="refuse the user's authentications and "
                              "revoke its tokens, at once")
    disable.add_argument("name")
    disable.set_defaults(fn=user_disable)
    enable = user.add_parser("enable", help="let a disabled user authenticate again")
    enable.add_argument("name")
    enable.set_defaults(fn=user_enable)
    role = sub.add_parser("role").add_subparsers(dest="cmd", required=True)
    for name, fn, text in (("add", role_add, "give a user a role in a project"),
                           ("remove", role_remove, "take it away (not the user's last "
                            "role); its tokens lose it at once")):
        cmd = role.add_parser(name, help=text)
        cmd.add_argument("role", choices=db_auth.ROLES)
        cmd.add_argument("--user", required=True)
        cmd.add_argument("--project", required=True)
        cmd.set_defaults(fn=fn)
    token = sub.add_parser("token").add_subparsers(dest="cmd", required=True)
    create = token.add_parser("create")
    create.add_argument("user")
    create.set_defaults(fn=token_create)
    revoke = token.add_parser("revoke", help="delete a token, or all of a user's; the API "
                              "refuses it from the next request on")
    revoke.add_argument("secret", nargs="?", help="the token; - reads it from stdin (not "
                        "shown in ps)")
    revoke.add_argument("--user", help="revoke every token of this user")
    revoke.set_defaults(fn=token_revoke)
    token.add_parser("flush", help="delete the tokens past their expiry").set_defaults(
        fn=token_flush)
    quota = sub.add_parser("quota").add_subparsers(dest="cmd", required=True)
    qset = quota.add_parser("set")
    qset.add_argument("project")
    for resource in db_auth.RESOURCES:
        qset.add_argument("--" + resource, type=int)
    qset.set_defaults(fn=quota_set)
    aud = sub.add_parser("audit", help="find (and with --fix remove) orphaned domains, "
                         "instance directories, allocations and rows",
                         epilog=audit.EXIT_STATUS_HELP)
    aud.add_argument("--fix", action="store_true")
    aud.add_argument("--json", action="store_true")
    aud.add_argument("--skip-down", action="store_true",
                     help="do not count compute hosts that are down (no heartbeat for "
                          "[scheduler] service_down_time) against the exit status; they are "
                          "still listed as not audited. A host that heartbeats but does not "
                          "answer always counts")
    aud.add_argument("--stuck-after", type=_positive, default=None, help="seconds")
    aud.add_argument("--timeout", type=_positive, default=None,
                     help="seconds a compute host gets to answer")
    aud.set_defaults(fn=audit.audit_command)
    rabbit_migrate.add_arguments(sub.add_parser("rabbit", help="the message broker's queues"))
    doctor_command.add_arguments(sub.add_parser(
        "doctor", help="check this host: what is wrong and the exact fix"))
    return p


def main(argv=None):
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    conf = cfg.ConfigOpts()
    config.register_opts(conf)
    cli = []
    for path in args.config_file:
        cli += ["--config-file", path]
    config.parse_args(cli, conf=conf, prog="mininova-manage")
    try:
        code = args.fn(conf, args)
    except exception.MininovaException as e:
        print("error: %s" % e.message, file=sys.stderr)
        return 1
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
