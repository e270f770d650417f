"""Projects, users, tokens and quotas.

Tokens: the secret is shown once at creation; only its sha256 is stored.
What a token may do is read at each lookup: its user (who must be enabled),
its project (the token's scope, else the user's default project) and the
roles the user holds there now. Every change to tokens, users and role
assignments is announced to the API's token cache (common/db/revocations.py):
revoking needs nothing more here. Passwords and the identity API's tokens:
common/db/identity.py.
Quotas: a project's usage rows change only by conditional UPDATEs inside the
transaction that creates or deletes a VM, so a concurrent burst cannot
overshoot a limit (the same pattern as the scheduler's claims; USAGE_SHARDS
says why there are several)."""
import hashlib
import random
import re
import secrets
import uuid

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from common import exception
from common.db.models import (Project, QuotaClass, QuotaLimit, QuotaUsage, RoleAssignment, Token,
                              User, utcnow)

# Lowest first; each role implies the ones before it (admin => manager =>
# member => reader: Keystone's default roles). A manager has a member's rights
# here (Nova's project-manager policies are not enforced).
ROLES = ("reader", "member", "manager", "admin")
IMPLIED_ROLES = {role: ROLES[:i + 1][::-1] for i, role in enumerate(ROLES)}
RESOURCES = ("instances", "cores", "ram")
DEFAULT_QUOTA_CLASS = "default"  # its limits replace the configured defaults
NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def _check_name(kind, name):
    if not NAME.match(name or ""):
        raise exception.Invalid(reason="%s name must be 1-64 letters, digits, '.', '_' or '-'"
                                % kind)


def project_create(s, name, project_id=None):
    _check_name("project", name)
    if s.scalars(sa.select(Project).where(Project.name == name)).first():
        raise exception.DuplicateName(kind="project", name=name)
    project = Project(id=project_id or uuid.uuid4().hex, name=name, created_at=utcnow())
    s.add(project)
    s.flush()
    # The usage rows exist from the start: creating a VM only updates one
    # (a release before the project existed may have made them).
    _ensure_usage_rows(s, project.id)
    return project


def project_get(s, ref):
    """The project whose id, or else whose name, is ``ref``. Ids and names are
    each unique, but one project's name may be another's id: then ``ref`` is
    ambiguous (409), never silently the one with that id."""
    by_id = s.get(Project, ref)
    by_name = s.scalars(sa.select(Project).where(Project.name == ref)).first()
    if by_id is not None and by_name is not None and by_id.id != by_name.id:
        raise exception.Conflict(
            reason="'%s' is the id of project '%s' and the name of project %s: name "
            "them '%s' and %s" % (ref, by_id.name, by_name.id, by_id.name, by_name.id))
    project = by_id or by_name
    if project is None:
        raise exception.NotFound("Project %s could not be found." % ref)
    return project


def check_role(role):
    if role not in ROLES:
        raise exception.Invalid(reason="role must be one of %s" % ", ".join(ROLES))


def top_role(roles):
    """The highest of ``roles`` (which implies the others), or None."""
    held = [ROLES.index(r) for r in roles if r in ROLES]
    return ROLES[max(held)] if held else None


def user_create(s, name, project_ref, role, password_hash=None):
    """A user whose default project is ``project_ref``, holding ``role`` there."""
    _check_name("user", name)
    check_role(role)
    if s.scalars(sa.select(User).where(User.name == name)).first():
        raise exception.DuplicateName(kind="user", name=name)
    user = User(id=uuid.uuid4().hex, name=name, project_id=project_get(s, project_ref).id,
                password_hash=password_hash, enabled=True, created_at=utcnow())
    s.add(user)
    s.flush()
    s.add(RoleAssignment(user_id=user.id, project_id=user.project_id, role=role))
    s.flush()
    return user


def token_hash(secret):
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def new_secret():
    return "mn-" + secrets.token_urlsafe(32)


def new_audit_id():
    """Keystone's form: 16 random bytes, urlsafe base64 without padding."""
    return secrets.token_urlsafe(16)


def token_create(s, user_name, expires_at=None):
    """A new token for a user, scoped to its default project; returns the
    secret (never stored)."""
    user = _user(s, user_name)
    secret = new_secret()
    s.add(Token(secret_sha256=token_hash(secret), user_id=user.id, created_at=utcnow(),
                expires_at=expires_at, audit_id=new_audit_id()))
    s.flush()
    return secret


def token_lookup_expiring(s, secret):
    """((user id, project id, role), expires_at or None) of a valid token,
    ``role`` the highest the user holds in the token's project now;
    Unauthorized otherwise (unknown, expired, user disabled, no role left in
    that project)."""
    scope = sa.func.coalesce(Token.project_id, User.project_id)
    rows = s.execute(sa.select(User.id, User.enabled, scope.label("project_id"),
                               Token.expires_at, RoleAssignment.role)
                     .join(Token, Token.user_id == User.id)
                     .outerjoin(RoleAssignment, sa.and_(RoleAssignment.user_id == User.id,
                                                        RoleAssignment.project_id == scope))
                     .where(Token.secret_sha256 == token_hash(secret))).all()
    if not rows:
        raise exception.Unauthorized(reason="invalid token")
    row = rows[0]
    if row.expires_at is not None and row.expires_at < utcnow():
        raise exception.Unauthorized(reason="token expired")
    if not row.enabled:
        raise exception.Unauthorized(reason="user disabled")
    role = top_role(r.role for r in rows)
    if role is None:
        raise exception.Unauthorized(
            reason="the user holds no role in the token's project any more")
    return (row.id, row.project_id, role), row.expires_at


def token_lookup(s, secret):
    """(user id, project id, role) of a valid token; Unauthorized otherwise."""
    return token_lookup_expiring(s, secret)[0]


def _user(s, name):
    user = s.scalars(sa.select(User).where(User.name == name)).first()
    if user is None:
        raise exception.UserNotFound(user=name)
    return user


def token_revoke(s, secret):
    """Delete the token whose secret this is (1); NotFound if there is none."""
    deleted = s.execute(sa.delete(Token).where(Token.secret_sha256 == token_hash(secret))
                        .execution_options(synchronize_session=False)).rowcount
    if not deleted:
        raise exception.NotFound("No such token.")
    return deleted


def user_tokens_revoke(s, user_name):
    """Delete every token of a user; how many there were."""
    return s.execute(sa.delete(Token).where(Token.user_id == _user(s, user_name).id)
                     .execution_options(synchronize_session=False)).rowcount


def user_delete(s, name):
    """Delete a user and its tokens; how many tokens went with it. Its VMs
    stay: they belong to the project."""
    user = _user(s, name)
    revoked = s.execute(sa.delete(Token).where(Token.user_id == user.id)
                        .execution_options(synchronize_session=False)).rowcount
    s.execute(sa.delete(RoleAssignment).where(RoleAssignment.user_id == user.id)
              .execution_options(synchronize_session=False))
    s.delete(user)
    s.flush()
    return revoked


# -- quotas ------------------------------------------------------------------

def quota_limits(s, project_id, defaults):
    """{resource: limit} of the enforced resources for a project: its
    overrides, else the ``default`` quota class's, else ``defaults`` (the
    configured ones)."""
    limits = {r: defaults[r] for r in RESOURCES}
    for query in (sa.select(QuotaClass.resource, QuotaClass.hard_limit)
                  .where(QuotaClass.class_name == DEFAULT_QUOTA_CLASS),
                  sa.select(QuotaLimit.resource, QuotaLimit.hard_limit)
                  .where(QuotaLimit.project_id == project_id)):
        for row in s.execute(query):
            if row.resource in limits:
                limits[row.resource] = row.hard_limit
    return limits


def quota_set(s, project_id, limits):
    for resource, limit in limits.items():
        if resource not in RESOURCES:
            raise exception.Invalid(reason="unknown quota resource %s" % resource)
        row = s.get(QuotaLimit, (project_id, resource))
        if row is None:
            s.add(QuotaLimit(project_id=project_id, resource=resource, hard_limit=limit))
        else:
            row.hard_limit = limit
    s.flush()


def quota_usage(s, project_id):
    """{resource: amount} a project's live VMs hold: the sum of its rows."""
    row = s.execute(_USAGE, {"project_id": project_id}).one()
    return dict(zip(RESOURCES, row))


_USAGE = sa.text("SELECT coalesce(sum(instances), 0), coalesce(sum(cores), 0), "
                 "coalesce(sum(ram), 0) FROM quota_usages WHERE project_id = :project_id")


def _ensure_usage_rows(s, project_id):
    """Make the project's missing usage rows (older projects have one)."""
    insert = postgresql.insert if s.get_bind().dialect.name == "postgresql" else sqlite.insert
    s.execute(insert(QuotaUsage).values([
        {"project_id": project_id, "shard": shard, "instances": 0, "cores": 0, "ram": 0}
        for shard in range(USAGE_SHARDS)]).on_conflict_do_nothing(
            index_elements=["project_id", "shard"]))


# A project's usage is the sum of USAGE_SHARDS rows (project_id, shard).
# A change that grows no limited resource (any change of a project without
# limits, any release) adds to one row picked per transaction, so concurrent
# creates of one project seldom wait for each other's row lock: with a
# single row each create of the project waited for the commit of the one
# before. A change that grows a limited resource goes to row 0 and is
# checked against row 0 (re-read after waiting for its lock) plus the other
# rows as the statement's snapshot saw them: those change only by releases
# (a stale sum is too high, never too low) or by growth of resources without
# a limit, which the check ignores; so a burst cannot overshoot a limit.
USAGE_SHARDS = 8

# The conditional UPDATE, in plain SQL (PostgreSQL and SQLite): built once,
# it costs no statement construction per create. The limits are the
# project's overrides (tier 0), else the default quota class's (tier 1),
# else the configured defaults, read by the statement itself (nothing cached
# to go stale, no extra round trip); below 0 means unlimited. One aggregate
# row even when there is no override at all.
_RESERVE = sa.text("""
UPDATE quota_usages
SET instances = quota_usages.instances + :instances, cores = quota_usages.cores + :cores,
    ram = quota_usages.ram + :ram
FROM (SELECT coalesce(max(CASE WHEN tier = 0 AND resource = 'instances' THEN hard_limit END),
                      max(CASE WHEN tier = 1 AND resource = 'instances' THEN hard_limit END),
                      :default_instances) AS instances,
             coalesce(max(CASE WHEN tier = 0 AND resource = 'cores' THEN hard_limit END),
                      max(CASE WHEN tier = 1 AND resource = 'cores' THEN hard_limit END),
                      :default_cores) AS cores,
             coalesce(max(CASE WHEN tier = 0 AND resource = 'ram' THEN hard_limit END),
                      max(CASE WHEN tier = 1 AND resource = 'ram' THEN hard_limit END),
                      :default_ram) AS ram
      FROM (SELECT 0 AS tier, resource, hard_limit FROM quota_limits
            WHERE project_id = :project_id
            UNION ALL
            SELECT 1 AS tier, resource, hard_limit FROM quota_classes
            WHERE class_name = 'default') AS overrides) AS lim,
     (SELECT coalesce(sum(instances), 0) AS instances, coalesce(sum(cores), 0) AS cores,
             coalesce(sum(ram), 0) AS ram
      FROM quota_usages WHERE project_id = :project_id AND shard <> 0) AS others
WHERE quota_usages.project_id = :project_id
  AND quota_usages.shard = CASE
      WHEN (lim.instances < 0 OR :instances <= 0) AND (lim.cores < 0 OR :cores <= 0)
           AND (lim.ram < 0 OR :ram <= 0) THEN :shard
      ELSE 0 END
  AND (lim.instances < 0 OR :instances <= 0
       OR quota_usages.instances + others.instances + :instances <= lim.instances)
  AND (lim.cores < 0 OR :cores <= 0 OR quota_usages.cores + others.cores + :cores <= lim.cores)
  AND (lim.ram < 0 OR :ram <= 0 OR quota_usages.ram + others.ram + :ram <= lim.ram)
""")
_UNLIMITED = {r: -1 for r in RESOURCES}


def _reserve(s, project_id, defaults, cores, ram, instances=1):
    """The conditional UPDATE: True if it fit (False also when the row it
    goes to is missing)."""
    shard = s.info.setdefault("quota_shard", random.randrange(USAGE_SHARDS))
    result = s.connection().execute(_RESERVE, {
        "project_id": project_id, "shard": shard, "cores": cores, "ram": ram,
        "instances": instances, "default_instances": defaults["instances"],
        "default_cores": defaults["cores"], "default_ram": defaults["ram"]})
    return result.rowcount == 1


def _apply(s, project_id, defaults, cores, ram, instances):
    """``_reserve``, making the project's usage rows first if one was
    missing. True if it fit."""
    if _reserve(s, project_id, defaults, cores, ram, instances):
        return True
    if s.execute(sa.select(sa.func.count()).select_from(QuotaUsage)
                 .where(QuotaUsage.project_id == project_id)).scalar() == USAGE_SHARDS:
        return False
    _ensure_usage_rows(s, project_id)
    return _reserve(s, project_id, defaults, cores, ram, instances)


def quota_reserve(s, project_id, defaults, cores, ram):
    """Count one more VM of ``cores`` vCPUs and ``ram`` MB against the
    project, or raise QuotaExceeded naming what would be exceeded.

    One conditional UPDATE of one of the project's usage rows (see
    USAGE_SHARDS): its row lock is held until the COMMIT, so callers make it
    the last statement before it. The rows are made with the project; a
    project without them (older ones) gets them here, once."""
    if _apply(s, project_id, defaults, cores, ram, 1):
        return
    _raise_exceeded(s, project_id, defaults, {"instances": 1, "cores": cores, "ram": ram})


def quota_resize(s, project_id, defaults, cores, ram):
    """Count a VM's change of flavor against the project: ``cores`` and
    ``ram`` more (negative: fewer; a shrink always fits), or QuotaExceeded
    naming what would be exceeded. The same conditional UPDATE as a create's
    (last before the COMMIT, for the same reason)."""
    if _apply(s, project_id, defaults, cores, ram, 0):
        return
    _raise_exceeded(s, project_id, defaults, {"cores": cores, "ram": ram})


def quota_release(s, project_id, cores, ram, instances=1):
    """Count ``instances`` VMs of ``cores`` and ``ram`` fewer (always fits)."""
    _apply(s, project_id, _UNLIMITED, -cores, -ram, -instances)


def _raise_exceeded(s, project_id, defaults, want):
    limits = quota_limits(s, project_id, defaults)
    used = quota_usage(s, project_id)
    for resource, amount in want.items():
        if amount > 0 and 0 <= limits[resource] < used[resource] + amount:
            raise exception.QuotaExceeded(resource=resource, requested=amount,
                                          used=used[resource], limit=limits[resource])
    # Refused by a limit lowered meanwhile, or by a concurrent change: the
    # first limited resource asked for is named.
    resource = next((r for r, a in want.items() if a > 0 and limits[r] >= 0), "instances")
    raise exception.QuotaExceeded(resource=resource, requested=want.get(resource, 1),
                                  used=used[resource], limit=limits[resource])
