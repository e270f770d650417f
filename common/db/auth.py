"""Projects, users, tokens and quotas.

Tokens: the secret is shown once at creation; only its sha256 is stored.
What a token may do is read at each lookup: its user (who must be enabled),
its project (the token's scope, else the user's default project) and the
roles the user holds there now. Every change to tokens, users and role
assignments is announced to the API's token cache (common/db/revocations.py):
revoking needs nothing more here. Passwords and the identity API's tokens:
common/db/identity.py.
Quotas: a project's usage row changes only by conditional UPDATEs inside the
transaction that creates or deletes a VM, so a concurrent burst cannot
overshoot a limit (the same pattern as the scheduler's claims)."""
import hashlib
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
    # The usage row exists from the start: creating a VM only updates it.
    s.add(QuotaUsage(project_id=project.id, instances=0, cores=0, ram=0))
    s.flush()
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
    row = s.get(QuotaUsage, project_id)
    return {r: getattr(row, r) if row else 0 for r in RESOURCES}


def _ensure_usage_row(s, project_id):
    insert = postgresql.insert if s.get_bind().dialect.name == "postgresql" else sqlite.insert
    s.execute(insert(QuotaUsage).values(project_id=project_id, instances=0, cores=0, ram=0)
              .on_conflict_do_nothing(index_elements=["project_id"]))


# The conditional UPDATE that reserves quota, in plain SQL (PostgreSQL and
# SQLite): built once, it costs no statement construction per create. The
# limits are the project's overrides (tier 0), else the default quota
# class's (tier 1), else the configured defaults, read by the statement
# itself (nothing cached to go stale, no extra round trip); below 0 means
# unlimited. One aggregate row even when there is no override at all.
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
            WHERE class_name = 'default') AS overrides) AS lim
WHERE quota_usages.project_id = :project_id
  AND (lim.instances < 0 OR quota_usages.instances + :instances <= lim.instances)
  AND (lim.cores < 0 OR quota_usages.cores + :cores <= lim.cores)
  AND (lim.ram < 0 OR quota_usages.ram + :ram <= lim.ram)
""")


def _reserve(s, project_id, defaults, cores, ram, instances=1):
    """The conditional UPDATE: True if it fit."""
    result = s.connection().execute(_RESERVE, {
        "project_id": project_id, "cores": cores, "ram": ram, "instances": instances,
        "default_instances": defaults["instances"], "default_cores": defaults["cores"],
        "default_ram": defaults["ram"]})
    return result.rowcount == 1


def quota_reserve(s, project_id, defaults, cores, ram):
    """Count one more VM of ``cores`` vCPUs and ``ram`` MB against the
    project, or raise QuotaExceeded naming what would be exceeded.

    One conditional UPDATE of the project's usage row: it takes the row lock
    that serializes concurrent creates of the project, so callers make it the
    last statement before COMMIT (the lock is then held for one round trip
    and the commit, not for the whole transaction). The row is made with the
    project; a project without one (older ones) gets it here, once."""
    if _reserve(s, project_id, defaults, cores, ram):
        return
    if s.get(QuotaUsage, project_id) is None:
        _ensure_usage_row(s, project_id)
        if _reserve(s, project_id, defaults, cores, ram):
            return
    want = {"instances": 1, "cores": cores, "ram": ram}
    limits = quota_limits(s, project_id, defaults)
    used = quota_usage(s, project_id)
    for resource, amount in want.items():
        if 0 <= limits[resource] < used[resource] + amount:
            raise exception.QuotaExceeded(resource=resource, requested=amount,
                                          used=used[resource], limit=limits[resource])
    raise exception.QuotaExceeded(resource="instances", requested=1, used=used["instances"],
                                  limit=limits["instances"])


def quota_resize(s, project_id, defaults, cores, ram):
    """Count a VM's change of flavor against the project: ``cores`` and
    ``ram`` more (negative: fewer; a shrink always fits), or QuotaExceeded
    naming what would be exceeded. The same conditional UPDATE as a create's
    (last before the COMMIT, for the same reason)."""
    if (cores <= 0 and ram <= 0) or _reserve(s, project_id, defaults, cores, ram, 0):
        if cores <= 0 and ram <= 0:
            quota_release(s, project_id, -cores, -ram, instances=0)
        return
    if s.get(QuotaUsage, project_id) is None:
        _ensure_usage_row(s, project_id)
        if _reserve(s, project_id, defaults, cores, ram, 0):
            return
    limits = quota_limits(s, project_id, defaults)
    used = quota_usage(s, project_id)
    for resource, amount in (("cores", cores), ("ram", ram)):
        if amount > 0 and 0 <= limits[resource] < used[resource] + amount:
            raise exception.QuotaExceeded(resource=resource, requested=amount,
                                          used=used[resource], limit=limits[resource])
    raise exception.QuotaExceeded(resource="cores", requested=cores, used=used["cores"],
                                  limit=limits["cores"])


def quota_release(s, project_id, cores, ram, instances=1):
    s.execute(sa.update(QuotaUsage).where(QuotaUsage.project_id == project_id).values(
        instances=QuotaUsage.instances - instances, cores=QuotaUsage.cores - cores,
        ram=QuotaUsage.ram - ram).execution_options(synchronize_session=False))
