"""Keystone v3 users, read-only and for oneself (or an admin):
``GET /identity/v3/users/{id}`` and ``GET /identity/v3/users/{id}/projects``
(``openstack project list --my-projects``). Another user: 403, as
Keystone; an unknown one: 404 (to an admin; others cannot tell)."""
from flask import Blueprint, current_app, g, jsonify

from common import exception
from common.db import identity
from common.db.models import User
from nova_api import validation
from nova_api.openstack.identity import views

bp = Blueprint("identity_users", __name__)
bp.before_request(validation.check_path_params)


def _user(s, user_id):
    if user_id != g.context.user_id and not g.context.is_admin:
        raise exception.Forbidden("You may only see yourself.")
    user = s.get(User, user_id)
    if user is None:
        raise exception.UserNotFound(user=user_id if len(user_id) <= 64 else user_id[:64] + "...")
    return user


@bp.get("/identity/v3/users/<user_id>")
def show(user_id):
    with current_app.extensions["mininova"]["db"].transaction() as s:
        return jsonify({"user": views.user(_user(s, user_id))})


@bp.get("/identity/v3/users/<user_id>/projects")
def projects(user_id):
    with current_app.extensions["mininova"]["db"].transaction() as s:
        user = _user(s, user_id)
        body = [views.project(p) for p in identity.user_projects(s, user.id)]
    return jsonify({"projects": body, "links": views.collection_links(
        "identity/v3/users", user_id, "projects")})
