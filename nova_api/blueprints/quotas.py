from flask import Blueprint, current_app, g, jsonify

from common import exception
from common.db import auth as db_auth
from nova_api import auth, validation

bp = Blueprint("quotas", __name__, url_prefix="/v1/quotas")
bp.before_request(validation.check_path_params)

_LIMIT = {"type": "integer", "minimum": -1, "maximum": 2 ** 31 - 1}
UPDATE_SCHEMA = {
    "type": "object",
    "properties": {"quota": {
        "type": "object",
        "properties": {r: _LIMIT for r in db_auth.RESOURCES},
        "additionalProperties": False,
    }},
    "required": ["quota"],
    "additionalProperties": False,
}


def _ext():
    return current_app.extensions["mininova"]


def _body(s, project_id):
    defaults = _ext()["vm_service"].quota_defaults
    return {"quota": {"project_id": project_id,
                      "limits": db_auth.quota_limits(s, project_id, defaults),
                      "usage": db_auth.quota_usage(s, project_id)}}


def _project_id(s, ref):
    """The id of the project ``ref`` names (its id, or else its name): the
    limits and usage are keyed by id, never by the ref as given. A member
    may name only their own project: anything else is 403, whether it exists
    or not."""
    try:
        project = db_auth.project_get(s, ref)
    except exception.NotFound:
        if not g.context.is_admin:
            raise exception.Forbidden("Only admins can see another project's quota.") from None
        raise
    if project.id != g.context.project_id and not g.context.is_admin:
        raise exception.Forbidden("Only admins can see another project's quota.")
    return project.id


@bp.get("/<project_id>")
def show(project_id):
    """A project's limits and usage, by project id or name: members see
    their own, admins any."""
    with _ext()["db"].transaction() as s:
        return jsonify(_body(s, _project_id(s, project_id)))


@bp.put("/<project_id>")
@auth.admin_only
def update(project_id):
    body = validation.json_body(UPDATE_SCHEMA)
    with _ext()["db"].transaction() as s:
        project_id = _project_id(s, project_id)
        db_auth.quota_set(s, project_id, body["quota"])
        return jsonify(_body(s, project_id))
