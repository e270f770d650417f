from flask import Blueprint, jsonify

bp = Blueprint("versions", __name__)

VERSION = {"id": "v1", "status": "CURRENT", "links": [{"rel": "self", "href": "/v1"}]}


@bp.get("/")
def versions():
    return jsonify({"versions": [VERSION]})


@bp.get("/v1")
def v1():
    return jsonify({"version": VERSION})
