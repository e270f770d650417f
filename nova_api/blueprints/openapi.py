"""``GET /v1/openapi.json``: the API description (no token needed, like
version discovery; see ``nova_api.auth.PUBLIC``)."""
from flask import Blueprint, jsonify

from nova_api import openapi

bp = Blueprint("openapi", __name__)


@bp.get("/v1/openapi.json")
def document():
    return jsonify(openapi.document())
