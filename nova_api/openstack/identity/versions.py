"""Identity version discovery, no token: ``GET /identity`` (300, the
versions) and ``GET /identity/v3`` (200, the one). Both spellings of each
answer without a redirect (keystoneauth asks without the slash)."""
from flask import Blueprint, jsonify

from nova_api import auth
from nova_api.openstack.identity import views

bp = Blueprint("identity_versions", __name__)


@bp.get("/identity/", strict_slashes=False)
@auth.public
def versions():
    response = jsonify({"versions": {"values": [views.version()]}})
    response.status_code = 300
    return response


@bp.get("/identity/v3/", strict_slashes=False)
@auth.public
def v3():
    return jsonify({"version": views.version()})
