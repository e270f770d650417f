from flask import Blueprint, current_app, jsonify

from common.db import api as db_api
from nova_api import views

bp = Blueprint("images", __name__, url_prefix="/v1/images")


@bp.get("")
def index():
    with current_app.extensions["mininova"]["db"].transaction() as s:
        return jsonify({"images": [views.image(i) for i in db_api.image_list(s)]})


@bp.get("/<ref>")
def show(ref):
    with current_app.extensions["mininova"]["db"].transaction() as s:
        return jsonify({"image": views.image(db_api.image_get(s, ref))})
