from flask import Blueprint, current_app, g, jsonify

from common.db import api as db_api
from common import exception
from nova_api import validation, views

bp = Blueprint("vms", __name__, url_prefix="/v1/vms")
bp.before_request(validation.check_path_params)

CREATE_SCHEMA = {
    "type": "object",
    "properties": {
        "name": validation.NAME,
        "image": validation.REF,
        "flavor": validation.REF,
        "group": validation.REF,
    },
    "required": ["name", "image", "flavor"],
    "additionalProperties": False,
}


_NO_ARGS = {"type": "object", "additionalProperties": False}
ACTION_ARGS = {
    "stop": _NO_ARGS, "start": _NO_ARGS, "pause": _NO_ARGS, "unpause": _NO_ARGS,
    "suspend": _NO_ARGS, "resume": _NO_ARGS,
    "reboot": {"type": "object", "additionalProperties": False,
               "properties": {"type": {"enum": ["soft", "hard", "SOFT", "HARD"]}}},
}
# Exactly one action, with its arguments: {"stop": {}}, {"reboot": {"type": "hard"}}.
ACTION_SCHEMA = {
    "type": "object",
    "properties": ACTION_ARGS,
    "additionalProperties": False,
    "minProperties": 1,
    "maxProperties": 1,
}
ACTIONS = tuple(ACTION_ARGS)
# GET /v1/vms/<ref>/console?lines=N
CONSOLE_PARAMS = {
    "type": "object",
    "properties": {"lines": {"type": "integer", "minimum": 1, "maximum": 10000,
                             "default": 100}},
    "additionalProperties": True,
}


def _compute_api():
    return current_app.extensions["mininova"]["compute_api"]


def _lookup_tables():
    """Image and flavor names for a list of VMs: two queries, not one per VM."""
    with current_app.extensions["mininova"]["db"].transaction() as s:
        images = {i.id: i for i in db_api.image_list(s)}
        flavors = {f.id: f for f in db_api.flavor_list(s)}
    return images, flavors


@bp.post("")
def create():
    body = validation.json_body(CREATE_SCHEMA)
    inst, image, flavor = _compute_api().create(g.context, body["name"], body["image"],
                                                body["flavor"], group_ref=body.get("group"))
    response = jsonify({"vm": views.vm(inst, {image.id: image}, {flavor.id: flavor})})
    response.status_code = 202
    response.headers["Location"] = "/v1/vms/%s" % inst.id
    return response


@bp.get("")
def index():
    instances = _compute_api().list(g.context)
    images, flavors = _lookup_tables()
    return jsonify({"vms": [views.vm(i, images, flavors) for i in instances]})


@bp.get("/<ref>")
def show(ref):
    inst = _compute_api().get(g.context, ref)
    images, flavors = _lookup_tables()
    return jsonify({"vm": views.vm(inst, images, flavors)})


@bp.delete("/<ref>")
def delete(ref):
    _compute_api().delete(g.context, ref)
    return "", 202


@bp.post("/<ref>/action")
def action(ref):
    body = validation.json_body({"type": "object"})
    if len(body) != 1 or next(iter(body)) not in ACTIONS:
        raise exception.ValidationError(
            field="(body)", reason="must be exactly one of %s" % ", ".join(
                '{"%s": {}}' % a for a in ACTIONS))
    name = next(iter(body))
    validation.validate(body, ACTION_SCHEMA)
    hard = name == "reboot" and body["reboot"].get("type", "soft").lower() == "hard"
    _compute_api().action(g.context, ref, name, hard=hard)
    return "", 202


@bp.get("/<ref>/console")
def console(ref):
    """The tail of the VM's serial console (like Nova's os-getConsoleOutput)."""
    lines = validation.query_params(CONSOLE_PARAMS)["lines"]
    output = _compute_api().get_console_output(g.context, ref, lines)
    return jsonify({"output": output})
