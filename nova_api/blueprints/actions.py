"""A VM's action timeline (like Nova's os-instance-actions): what was asked,
by whom, and every step each daemon took, with durations.

Actions stay readable after the VM is deleted when it is addressed by id."""
import uuid

from flask import Blueprint, current_app, g, jsonify

from common import exception
from common.db import actions
from common.db import api as db_api
from nova_api import validation, views

bp = Blueprint("actions", __name__, url_prefix="/v1/vms")
bp.before_request(validation.check_path_params)


def _db():
    return current_app.extensions["mininova"]["db"]


def _instance_id(ref):
    """The id of the caller's VM ``ref`` (id or name); for a deleted VM by id,
    if it has actions in the caller's project."""
    try:
        return current_app.extensions["mininova"]["vm_service"].get(g.context, ref).id
    except exception.InstanceNotFound:
        if db_api.is_uuid(ref):
            instance_id = str(uuid.UUID(ref))
            with _db().transaction() as s:
                mine = bool(actions.action_list(s, instance_id, project_id=g.context.project_id))
            if mine:
                return instance_id
        raise


@bp.get("/<ref>/actions")
def index(ref):
    instance_id = _instance_id(ref)
    with _db().transaction() as s:
        rows = actions.action_list(s, instance_id)
    return jsonify({"actions": [views.instance_action(a) for a in rows]})


@bp.get("/<ref>/actions/<request_id>")
def show(ref, request_id):
    instance_id = _instance_id(ref)
    with _db().transaction() as s:
        action, events = actions.action_get(s, instance_id, request_id)
    return jsonify({"action": views.instance_action_detail(action, events)})
