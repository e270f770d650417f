from flask import Blueprint, current_app, g, jsonify

from common.db import hosts as db_hosts
from nova_api import validation, views

bp = Blueprint("server_groups", __name__, url_prefix="/v1/server-groups")
bp.before_request(validation.check_path_params)

CREATE_SCHEMA = {
    "type": "object",
    "properties": {
        "name": validation.LONG_NAME,
        "policy": {"enum": list(db_hosts.POLICIES)},
    },
    "required": ["name", "policy"],
    "additionalProperties": False,
}


def _db():
    return current_app.extensions["mininova"]["db"]


@bp.post("")
def create():
    body = validation.json_body(CREATE_SCHEMA)
    with _db().transaction() as s:
        group = db_hosts.group_create(s, g.context.project_id, body["name"], body["policy"])
    response = jsonify({"server_group": views.server_group(group, [])})
    response.status_code = 201
    response.headers["Location"] = "/v1/server-groups/%s" % group.id
    return response


@bp.get("")
def index():
    with _db().transaction() as s:
        return jsonify({"server_groups": [
            views.server_group(grp, db_hosts.group_members(s, grp.id))
            for grp in db_hosts.group_list(s, g.context.project_id)]})


@bp.get("/<ref>")
def show(ref):
    with _db().transaction() as s:
        group = db_hosts.group_get(s, g.context.project_id, ref)
        return jsonify({"server_group": views.server_group(group, db_hosts.group_members(s, group.id))})


@bp.delete("/<ref>")
def delete(ref):
    with _db().transaction() as s:
        db_hosts.group_delete(s, g.context.project_id, ref)
    return "", 204
