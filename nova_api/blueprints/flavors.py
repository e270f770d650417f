from flask import Blueprint, current_app, jsonify

from common.db import api as db_api
from nova_api import validation, views

bp = Blueprint("flavors", __name__, url_prefix="/v1/flavors")
bp.before_request(validation.check_path_params)


@bp.get("")
def index():
    with current_app.extensions["mininova"]["db"].transaction() as s:
        return jsonify({"flavors": [views.flavor(f) for f in db_api.flavor_list(s)]})


@bp.get("/<ref>")
def show(ref):
    with current_app.extensions["mininova"]["db"].transaction() as s:
        return jsonify({"flavor": views.flavor(db_api.flavor_get(s, ref))})
