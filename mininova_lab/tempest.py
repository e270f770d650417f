"""Unmodified Tempest (tempest 47) against a real mininova stack.

A stack for Tempest is made with ``extra_conf=STACK_CONF``. ``prepare``
gives a started ``Stack`` what tests/tempest/tempest.conf.in
assumes (SPEC §5.1): two copies of the tiny image, two small flavors, and the
pre-provisioned accounts of tests/tempest/accounts.yaml, each with a fresh
random password; then a Tempest workspace whose config points at the stack.
``run`` runs load lists there and returns each test id's status, read from
the subunit stream (success, fail, skip, ...)."""
import io
import os
import secrets
import subprocess
import sys

import yaml

from mininova_lab.stack import ROOT

TEMPEST_FILES = os.path.join(ROOT, "tests", "tempest")
# Small enough for ~10 live guests on a 2-CPU machine, as SPEC §5.2 advises.
FLAVORS = (("tempest-1", 128), ("tempest-2", 192))
# The stack's config beyond Stack's own (its extra_conf): server names repeat
# as in Nova (ServersTestJSON.test_create_with_existing_server_name); one
# compute host, so a resize stays on it (as devstack's single node).
STACK_CONF = ("[api]\nunique_vm_name_scope =\n"
              "[compute]\nallow_resize_to_same_host = True\n")
# tempest.conf for a stack with two compute hosts (prepare's overrides): the
# moves on (tests/functional/test_tempest_moves.py, m3.load-list).
MOVES_CONF = (("compute", "min_compute_nodes", "2"),
              ("compute-feature-enabled", "cold_migration", "True"),
              ("compute-feature-enabled", "live_migration", "True"),
              ("compute-feature-enabled", "block_migration_for_live_migration", "True"))


def _bin(name):
    return os.path.join(os.path.dirname(sys.executable), name)


def _load_accounts(password, names):
    accounts = []
    for name in names:
        with open(os.path.join(TEMPEST_FILES, name)) as f:
            accounts += yaml.safe_load(f)
    for account in accounts:
        account["password"] = password
    return accounts


def _provision_accounts(stack, accounts):
    for project in sorted({a["project_name"] for a in accounts}):
        try:
            stack.manage("project", "create", project)
        except subprocess.CalledProcessError:
            pass  # the stack's own admin project
    for account in accounts:
        # The first role makes the user; more roles in that project are added.
        roles = list(account["roles"])
        stack.manage("user", "create", account["username"], "--project",
                     account["project_name"], "--role", roles[0], "--password-stdin",
                     stdin=account["password"] + "\n")
        for role in roles[1:]:
            stack.manage("role", "add", role, "--user", account["username"],
                         "--project", account["project_name"])


def _flavor_ids(stack):
    out = stack.get("/v1/flavors").json()["flavors"]
    by_name = {f["name"]: f["id"] for f in out}
    return [by_name[name] for name, _ in FLAVORS]


def override(conf, section, key, value):
    """``conf`` (tempest.conf's text) with ``key = value`` in ``[section]``
    (replacing the key's line there, else added at the section's end)."""
    out, current, done = [], None, False
    for line in conf.splitlines():
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            if current == section and not done:
                out.append("%s = %s" % (key, value))
                done = True
            current = stripped[1:-1]
        elif current == section and stripped.partition("=")[0].strip() == key:
            line, done = "%s = %s" % (key, value), True
        out.append(line)
    if not done:
        out += ([] if current == section else ["[%s]" % section]) + ["%s = %s" % (key, value)]
    return "\n".join(out) + "\n"


def prepare(stack, image_path, workdir, accounts=("accounts.yaml",), overrides=()):
    """Provision ``stack`` for Tempest and make a workspace in ``workdir``;
    the workspace's path. ``accounts``: the files of tests/tempest/ whose
    accounts are made; ``overrides``: (section, key, value) changes to
    tempest.conf.in."""
    images = [stack.add_image(name, image_path)["id"]
              for name in ("tempest-image", "tempest-image-alt")]
    for name, ram in FLAVORS:
        stack.manage("flavor", "create", name, "--vcpus", "1", "--ram", str(ram), "--disk", "1")
    flavors = _flavor_ids(stack)
    accounts = _load_accounts(secrets.token_urlsafe(16), accounts)
    _provision_accounts(stack, accounts)
    workspace = os.path.join(str(workdir), "tempest")
    subprocess.run([_bin("tempest"), "init", "--workspace-path",
                    os.path.join(str(workdir), "workspaces.yaml"), workspace],
                   check=True, capture_output=True)
    accounts_path = os.path.join(workspace, "etc", "accounts.yaml")
    with open(os.open(accounts_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        yaml.safe_dump(accounts, f)
    with open(os.path.join(TEMPEST_FILES, "tempest.conf.in")) as f:
        conf = f.read()
    for key, value in (("ACCOUNTS_YAML", accounts_path), ("HOST", "127.0.0.1"),
                       ("PORT", str(stack.port)), ("IMAGE_REF_ALT", images[1]),
                       ("IMAGE_REF", images[0]), ("FLAVOR_REF_ALT", flavors[1]),
                       ("FLAVOR_REF", flavors[0])):
        conf = conf.replace(key, value)
    for section, key, value in overrides:
        conf = override(conf, section, key, value)
    with open(os.path.join(workspace, "etc", "tempest.conf"), "w") as f:
        f.write(conf)
    return workspace


def load_list(name):
    """The test ids of tests/tempest/<name> (blank lines and # comments skipped)."""
    with open(os.path.join(TEMPEST_FILES, name)) as f:
        return [line.strip() for line in f if line.strip() and not line.startswith("#")]


def run(workspace, ids, concurrency=4, timeout=3600):
    """Run the tests ``ids`` in ``workspace``; {test id: status}. Tempest's
    own output goes to ``workspace``/tempest-run.log."""
    import subunit
    import testtools

    listed = os.path.join(workspace, "load-list")
    with open(listed, "w") as f:
        f.write("\n".join(ids) + "\n")
    with open(os.path.join(workspace, "tempest-run.log"), "wb") as log:
        proc = subprocess.run([_bin("tempest"), "run", "--concurrency", str(concurrency),
                               "--load-list", listed, "--subunit"], cwd=workspace,
                              stdout=subprocess.PIPE, stderr=log, timeout=timeout,
                              env=dict(os.environ, PATH=os.path.dirname(sys.executable)
                                       + os.pathsep + os.environ.get("PATH", "")))
    statuses = {}
    stream = subunit.ByteStreamToStreamResult(io.BytesIO(proc.stdout), non_subunit_name="stdout")
    result = testtools.StreamToDict(lambda test: statuses.__setitem__(test["id"], test["status"]))
    result.startTestRun()
    try:
        stream.run(result)
    finally:
        result.stopTestRun()
    return statuses
