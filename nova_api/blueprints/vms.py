from flask import Blueprint, current_app, g, jsonify

from common.db import api as db_api
from nova_api import validation, views

bp = Blueprint("vms", __name__, url_prefix="/v1/vms")

CREATE_SCHEMA = {
    "type": "object",
    "properties": {
        "name": validation.NAME,
        "image": validation.REF,
        "flavor": validation.REF,
    },
    "required": ["name", "image", "flavor"],
    "additionalProperties": False,
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
                                                body["flavor"])
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
