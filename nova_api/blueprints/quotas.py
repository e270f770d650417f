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
    defaults = _ext()["compute_api"].quota_defaults
    return {"quota": {"project_id": project_id,
                      "limits": db_auth.quota_limits(s, project_id, defaults),
                      "usage": db_auth.quota_usage(s, project_id)}}


@bp.get("/<project_id>")
def show(project_id):
    """A project's limits and usage: members see their own, admins any."""
    if project_id != g.context.project_id and not g.context.is_admin:
        raise exception.Forbidden("Only admins can see another project's quota.")
    with _ext()["db"].transaction() as s:
        db_auth.project_get(s, project_id)
        return jsonify(_body(s, project_id))


@bp.put("/<project_id>")
@auth.admin_only
def update(project_id):
    body = validation.json_body(UPDATE_SCHEMA)
    with _ext()["db"].transaction() as s:
        db_auth.project_get(s, project_id)
        db_auth.quota_set(s, project_id, body["quota"])
        return jsonify(_body(s, project_id))
