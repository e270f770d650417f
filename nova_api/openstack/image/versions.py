"""Image version discovery, no token: ``GET /image`` (300, as Glance's
version negotiation answers; OSC gives up on the image service without it)
and ``GET /image/versions`` (200). Both spellings answer without a redirect."""
from flask import Blueprint, jsonify

from nova_api import auth
from nova_api.openstack.image import views

bp = Blueprint("image_versions", __name__)


@bp.get("/image/", strict_slashes=False)
@auth.public
def versions():
    response = jsonify({"versions": [views.version()]})
    response.status_code = 300
    return response


@bp.get("/image/versions", strict_slashes=False)
@auth.public
def versions_list():
    return jsonify({"versions": [views.version()]})
