"""Keystone's side of the accounts: role assignments, passwords, enabling
users, and the tokens the identity API issues.

Invariants:
- a user holds at least one role in some project (the last one cannot be
  removed); its default project need not be among them;
- what revokes (disabling a user, a new password, removing a role) is an
  UPDATE or DELETE of users, tokens or role_assignments, which the database
  announces to the API's token cache (common/db/revocations.py);
- issuing a token locks its user's row (``FOR UPDATE``), and whatever revokes
  a user's tokens writes that row first: a token is never issued on a
  password or an enabled flag that a committed change has already replaced
  (the issue sees the change and refuses, or the change's DELETE of the
  user's tokens comes after the issue and removes it too).
"""
import sqlalchemy as sa

from common import exception
from common.db import auth as db_auth
from common.db.models import Project, RoleAssignment, Token, User, utcnow


def user_get(s, ref):
    """The user whose id, or else whose name, is ``ref``."""
    user = s.get(User, ref) or s.scalars(sa.select(User).where(User.name == ref)).first()
    if user is None:
        raise exception.UserNotFound(user=ref)
    return user


def user_list(s):
    """[(user, {project name: [roles]})] by name."""
    users = s.scalars(sa.select(User).order_by(User.name)).all()
    roles = {}
    for row in s.execute(
            sa.select(RoleAssignment.user_id, Project.name, RoleAssignment.role)
            .join(Project, Project.id == RoleAssignment.project_id)
            .order_by(Project.name, RoleAssignment.role)):
        roles.setdefault(row.user_id, {}).setdefault(row.name, []).append(row.role)
    return [(u, roles.get(u.id, {})) for u in users]


def _locked_user(s, user_id):
    return s.scalars(sa.select(User).where(User.id == user_id).with_for_update()).first()


def _revoke_tokens(s, user_id):
    return s.execute(sa.delete(Token).where(Token.user_id == user_id)
                     .execution_options(synchronize_session=False)).rowcount


def user_set_password(s, name, password_hash):
    """Set a user's password hash and revoke its tokens (as Keystone does: a
    new password ends the sessions of whoever knew the old one); how many."""
    user = _locked_user(s, user_get(s, name).id)
    user.password_hash = password_hash
    s.flush()
    return _revoke_tokens(s, user.id)


def user_set_enabled(s, name, enabled):
    """Enable or disable a user; disabling revokes its tokens (re-enabling
    brings none back). How many tokens were revoked."""
    user = _locked_user(s, user_get(s, name).id)
    user.enabled = bool(enabled)
    s.flush()
    return 0 if enabled else _revoke_tokens(s, user.id)


def roles_in(s, user_id, project_id):
    """The roles ``user_id`` holds in ``project_id``, implied ones included,
    highest first; [] if none."""
    held = s.scalars(sa.select(RoleAssignment.role).where(
        RoleAssignment.user_id == user_id, RoleAssignment.project_id == project_id)).all()
    top = db_auth.top_role(held)
    return list(db_auth.IMPLIED_ROLES[top]) if top else []


def user_projects(s, user_id):
    """The projects a user holds a role in, by name."""
    return s.scalars(sa.select(Project).join(
        RoleAssignment, RoleAssignment.project_id == Project.id).where(
        RoleAssignment.user_id == user_id).distinct().order_by(Project.name)).all()


def role_add(s, user_ref, project_ref, role):
    """Give a user a role in a project; False if it already held it."""
    db_auth.check_role(role)
    user, project = user_get(s, user_ref), db_auth.project_get(s, project_ref)
    if s.get(RoleAssignment, (user.id, project.id, role)) is not None:
        return False
    s.add(RoleAssignment(user_id=user.id, project_id=project.id, role=role))
    s.flush()
    return True


def role_remove(s, user_ref, project_ref, role):
    """Take a role from a user; its tokens scoped to that project lose what
    the role allowed at once (or are refused, if no role is left there)."""
    db_auth.check_role(role)
    user, project = user_get(s, user_ref), db_auth.project_get(s, project_ref)
    _locked_user(s, user.id)  # against a concurrent remove of its other last role
    assignment = s.get(RoleAssignment, (user.id, project.id, role))
    if assignment is None:
        raise exception.RoleAssignmentNotFound(user=user.name, role=role, project=project.name)
    count = s.scalar(sa.select(sa.func.count()).select_from(RoleAssignment).where(
        RoleAssignment.user_id == user.id))
    if count == 1:
        raise exception.Conflict(reason="%s is the only role of user %s: a user keeps at "
                                 "least one (delete the user instead)" % (role, user.name))
    s.delete(assignment)
    s.flush()


# -- the identity API's tokens ---------------------------------------------------

def password_candidate(s, user_id=None, name=None):
    """(user id, password hash, enabled) of the user a password names, by id
    or by name; None if there is none. Read in its own short transaction:
    the hash is checked outside any (it takes a tenth of a second)."""
    where = User.id == user_id if user_id is not None else User.name == name
    row = s.execute(sa.select(User.id, User.password_hash, User.enabled).where(where)).first()
    return tuple(row) if row is not None else None


def token_subject(s, secret):
    """The row of a valid token (unexpired, its user enabled); Unauthorized
    otherwise. Its scope and roles are checked by whoever uses it."""
    token = s.scalars(sa.select(Token).where(
        Token.secret_sha256 == db_auth.token_hash(secret))).first()
    if token is None:
        raise exception.Unauthorized(reason="invalid token")
    if token.expires_at is not None and token.expires_at < utcnow():
        raise exception.Unauthorized(reason="token expired")
    if not s.get(User, token.user_id).enabled:
        raise exception.Unauthorized(reason="user disabled")
    return token


def scope_project(s, project_id=None, name=None):
    """The project a scope names (by id, or by name in the default domain);
    Unauthorized if there is none (a bad scope is a failed authentication)."""
    if project_id is not None:
        project = s.get(Project, project_id)
    else:
        project = s.scalars(sa.select(Project).where(Project.name == name)).first()
    if project is None:
        raise exception.Unauthorized(reason="no such project to scope to")
    return project


def token_issue(s, user_id, project_id, methods, issued_at, expires_at, password_hash=None,
                audit_chain_id=None):
    """Issue a token for a user scoped to a project it holds a role in (its
    default project if ``project_id`` is None): (secret, Token, User,
    Project, roles highest first). ``password_hash``: the hash the
    password was checked against, which must still be the user's.
    Unauthorized if the user is gone, disabled, has changed its password or
    holds no role in the project."""
    user = _locked_user(s, user_id)
    if user is None or not user.enabled:
        raise exception.Unauthorized(reason="user unknown or disabled")
    if password_hash is not None and user.password_hash != password_hash:
        raise exception.Unauthorized(reason="the password changed meanwhile")
    project = s.get(Project, project_id or user.project_id)
    roles = roles_in(s, user.id, project.id) if project is not None else []
    if not roles:
        raise exception.Unauthorized(reason="the user holds no role in that project")
    secret = db_auth.new_secret()
    token = Token(secret_sha256=db_auth.token_hash(secret), user_id=user.id,
                  project_id=project.id, methods=",".join(methods), created_at=issued_at,
                  expires_at=expires_at, audit_id=db_auth.new_audit_id(),
                  audit_chain_id=audit_chain_id)
    s.add(token)
    s.flush()
    return secret, token, user, project, roles


def token_subject_or_404(s, secret):
    """token_subject, for a token named by X-Subject-Token: TokenNotFound."""
    try:
        return token_subject(s, secret)
    except exception.Unauthorized:
        raise exception.TokenNotFound() from None


def token_owner(s, token):
    """(user, project) of a token: its scope, or its user's default project."""
    user = s.get(User, token.user_id)
    return user, s.get(Project, token.project_id or user.project_id)


def token_delete(s, token):
    """Revoke one token (Keystone's DELETE /v3/auth/tokens)."""
    s.delete(token)
    s.flush()


def expired_tokens_flush(s):
    """Delete the tokens past their expiry (the identity API's accumulate:
    one per authentication); how many."""
    return s.execute(sa.delete(Token).where(Token.expires_at < utcnow())
                     .execution_options(synchronize_session=False)).rowcount
