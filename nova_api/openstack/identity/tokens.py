"""Keystone v3 tokens: ``/identity/v3/auth/tokens`` (issue, validate,
revoke) and what a token's holder may read about itself
(``/identity/v3/auth/catalog``, ``/identity/v3/auth/projects``).

Issuing (POST, no X-Auth-Token needed) authenticates one method:
- ``password``: a user by id, or by name in the default domain; its hash is
  checked outside any transaction (a tenth of a second), and the token is
  issued only if that hash is still the user's (common/db/identity.py);
- ``token``: a valid token re-scoped; the new token expires when the old one
  does (at the latest ``[identity] token_expiration`` from now) and carries
  its audit id as the second of its ``audit_ids``.
The scope is a project by id, or by name in the default domain; none (or
"unscoped") means the user's default project. Whatever fails (user, password,
project, role, method, domain) is the same 401; the log says which."""
import datetime

from flask import Blueprint, current_app, g, jsonify, request

from common import exception, passwords
from common.db import identity, revocations
from common.db.models import utcnow
from nova_api import auth, validation
from nova_api.openstack import catalog
from nova_api.openstack.identity import schemas, views

bp = Blueprint("identity_tokens", __name__)
DEFAULT_DOMAIN_IDS = {"default"}
DEFAULT_DOMAIN_NAMES = {"Default"}
SUPPORTED_METHODS = ("password", "token")


def _ext():
    return current_app.extensions["mininova"]


def _in_default_domain(domain, field):
    """A name is only meaningful with its domain, which must be ours."""
    if domain is None:
        raise exception.ValidationError(field=field, reason="is required with a name")
    if (domain.get("id") not in DEFAULT_DOMAIN_IDS
            and domain.get("name") not in DEFAULT_DOMAIN_NAMES):
        raise exception.Unauthorized(reason="only the default domain exists")


def _requested_project(scope):
    """{"project_id" or "name": ...} for identity.scope_project, or None for
    the user's default project."""
    if scope is None or scope == "unscoped":
        return None
    project = scope.get("project")
    if project is None:  # a domain, system or trust scope: not supported
        raise exception.Unauthorized(reason="only project scopes are supported")
    if "id" in project:
        return {"project_id": project["id"]}
    if "name" in project:
        _in_default_domain(project.get("domain"), "auth.scope.project.domain")
        return {"name": project["name"]}
    raise exception.ValidationError(field="auth.scope.project", reason="needs an id or a name")


def _password_user(method_body):
    """(user id, the hash checked) of a password that is right."""
    user = method_body["user"]
    cost = _ext()["conf"].identity.password_hash_cost
    if "id" in user:
        lookup = {"user_id": user["id"]}
    elif "name" in user:
        _in_default_domain(user.get("domain"), "auth.identity.password.user.domain")
        lookup = {"name": user["name"]}
    else:
        raise exception.ValidationError(field="auth.identity.password.user",
                                        reason="needs an id or a name")
    with _ext()["db"].transaction() as s:
        found = identity.password_candidate(s, **lookup)
    stored = found[1] if found is not None else None
    if not passwords.verify(user["password"], stored, cost):
        raise exception.Unauthorized(reason="wrong password, or no such user with a password")
    if not found[2]:
        raise exception.Unauthorized(reason="user disabled")
    return found[0], stored


@bp.post("/identity/v3/auth/tokens")
@auth.public
def issue():
    body = validation.json_body(schemas.AUTH)["auth"]
    ident = body["identity"]
    method = ident["methods"][0]
    if method not in SUPPORTED_METHODS:
        raise exception.Unauthorized(reason="unsupported authentication method")
    if method not in ident:
        raise exception.ValidationError(field="auth.identity." + method, reason="is required")
    project = _requested_project(body.get("scope"))
    lifetime = datetime.timedelta(seconds=_ext()["conf"].identity.token_expiration)
    now = utcnow().replace(microsecond=0)
    checked_hash, chain, methods = None, None, [method]
    if method == "password":
        user_id, checked_hash = _password_user(ident["password"])
        expires_at = now + lifetime
    else:
        with _ext()["db"].transaction() as s:
            old = identity.token_subject(s, ident["token"]["id"])
            user_id = old.user_id
            expires_at = min(old.expires_at or now + lifetime, now + lifetime)
            chain = old.audit_chain_id or old.audit_id
            old_methods = old.methods.split(",") if old.methods else []
            methods = old_methods + [m for m in ("token",) if m not in old_methods]
    with _ext()["db"].transaction() as s:
        project_id = identity.scope_project(s, **project).id if project else None
        secret, token, user, project_row, roles = identity.token_issue(
            s, user_id, project_id, methods, now, expires_at, password_hash=checked_hash,
            audit_chain_id=chain)
        response = jsonify(views.token(token, user, project_row, roles,
                                       with_catalog="nocatalog" not in request.args))
    response.status_code = 201
    response.headers["X-Subject-Token"] = secret
    return response


def _subject():
    """The secret in the X-Subject-Token header (400 without one)."""
    secret = request.headers.get("X-Subject-Token")
    if not secret:
        raise exception.ValidationError(field="X-Subject-Token header", reason="is required")
    return secret


def _check_subject(token):
    """A caller may see and revoke its own tokens; an admin anybody's
    (Keystone's policy)."""
    if token.user_id != g.context.user_id and not g.context.is_admin:
        raise exception.Forbidden("Only an admin may see or revoke another user's token.")


@bp.get("/identity/v3/auth/tokens")
def validate():
    secret = _subject()
    with _ext()["db"].transaction() as s:
        try:
            token = identity.token_subject(s, secret)
            _check_subject(token)
            user, project = identity.token_owner(s, token)
            roles = identity.roles_in(s, user.id, project.id)
            if not roles:
                raise exception.Unauthorized(reason="no role in its project")
        except exception.Unauthorized:
            raise exception.TokenNotFound() from None
        response = jsonify(views.token(token, user, project, roles,
                                       with_catalog="nocatalog" not in request.args))
    response.headers["X-Subject-Token"] = secret
    return response


@bp.delete("/identity/v3/auth/tokens")
@auth.any_role  # revoking one's own token is no change to the project
def revoke():
    secret = _subject()
    db = _ext()["db"]
    with db.transaction() as s:
        token = identity.token_subject_or_404(s, secret)
        _check_subject(token)
        identity.token_delete(s, token)
        number = revocations.epoch(s)
    # Answer once every API process refuses it (as mininova-manage does).
    revocations.wait_until_heard(db, number, _ext()["conf"].api.token_cache_seconds + 1)
    return "", 204


@bp.get("/identity/v3/auth/catalog")
def auth_catalog():
    return jsonify({"catalog": catalog.catalog(),
                    "links": views.collection_links("identity/v3/auth/catalog")})


@bp.get("/identity/v3/auth/projects")
def auth_projects():
    with _ext()["db"].transaction() as s:
        projects = identity.user_projects(s, g.context.user_id)
        body = [views.project(p) for p in projects]
    return jsonify({"projects": body, "links": views.collection_links(
        "identity/v3/auth/projects")})
