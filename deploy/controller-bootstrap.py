#!/usr/bin/env python3
"""The controller's database work for deploy/controller.sh, in one process
(each ``mininova-manage`` subprocess costs a second of imports): schema sync,
the accounts, the images. Idempotent: what exists is left alone.

Accounts, like devstack's: ``admin`` (project admin, role admin), ``demo``
(project demo, role member) and ``compute`` (project service, role admin: like
Nova's service user, it is the compute hosts' identity; they use its token to
download images and to see their own service come up). Each token is created
once and kept in CREDS_DIR/USER.token (0600); CREDS_DIR/../{admin,demo}rc
export MININOVA_URL and MININOVA_TOKEN for the CLI.

Usage: controller-bootstrap.py --config-file CONF --state-dir DIR --api-url URL
                               [--image NAME=PATH ...]
Run with the venv's python (it imports mininova).
"""
import argparse
import contextlib
import io
import os
import sys

ACCOUNTS = (  # (project, user, role)
    ("admin", "admin", "admin"),
    ("demo", "demo", "member"),
    ("service", "compute", "admin"),
)


class ManageError(RuntimeError):
    pass


class Manage:
    """``mininova-manage --config-file CONF ARGS`` in this process."""

    def __init__(self, conf_path):
        self.conf_path = conf_path

    def __call__(self, *args):
        from nova_manage import cmd as manage
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = manage.main(["--config-file", self.conf_path, *args])
        if code:
            raise ManageError("mininova-manage %s: %s" % (" ".join(args[:2]),
                                                          err.getvalue().strip()))
        return out.getvalue()


def write_secret(path, text):
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def ensure_token(manage, creds_dir, project, user, role):
    """The user's token from CREDS_DIR, or a new user (and project) and token."""
    path = os.path.join(creds_dir, user + ".token")
    if os.path.exists(path) and os.path.getsize(path):
        with open(path) as f:
            return f.read().strip(), False
    for args in (("project", "create", project),
                 ("user", "create", user, "--project", project, "--role", role)):
        try:
            manage(*args)
        except ManageError as e:
            if "exist" not in str(e).lower():  # a re-run after the token file was lost
                raise
    token = manage("token", "create", user).strip()
    write_secret(path, token + "\n")
    return token, True


def parse_image(text):
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError("expected NAME=PATH, got %r" % text)
    return name, path


def image_names(listing):
    """Names from ``mininova-manage image list`` lines: ID  NAME  SIZE  CHECKSUM."""
    return {line.split()[1] for line in listing.splitlines() if len(line.split()) >= 4}


def bootstrap(manage, state_dir, api_url, images=()):
    changes = []
    manage("db", "sync")
    creds_dir = os.path.join(state_dir, "creds")
    os.makedirs(creds_dir, mode=0o700, exist_ok=True)
    tokens = {}
    for project, user, role in ACCOUNTS:
        tokens[user], created = ensure_token(manage, creds_dir, project, user, role)
        if created:
            changes.append("user %s (%s in %s)" % (user, role, project))
    for user in ("admin", "demo"):
        rc = "export MININOVA_URL=%s\nexport MININOVA_TOKEN=%s\n" % (api_url, tokens[user])
        path = os.path.join(state_dir, user + "rc")
        current = open(path).read() if os.path.exists(path) else None
        if current != rc:
            write_secret(path, rc)
            changes.append(path)
    present = image_names(manage("image", "list"))
    for name, path in images:
        if name not in present:
            if not os.path.exists(path):
                raise ManageError("image %s: no file %s" % (name, path))
            manage("image", "add", name, path)
            changes.append("image %s" % name)
    return tokens, changes


def main(argv=None):
    p = argparse.ArgumentParser(description="controller database bootstrap")
    p.add_argument("--config-file", required=True)
    p.add_argument("--state-dir", required=True)
    p.add_argument("--api-url", required=True)
    p.add_argument("--image", type=parse_image, action="append", default=[],
                   metavar="NAME=PATH")
    args = p.parse_args(argv)
    try:
        _, changes = bootstrap(Manage(args.config_file), args.state_dir, args.api_url,
                               args.image)
    except ManageError as e:
        print("controller-bootstrap.py: %s" % e, file=sys.stderr)
        return 1
    for change in changes:
        print("controller-bootstrap.py: created %s" % change, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
