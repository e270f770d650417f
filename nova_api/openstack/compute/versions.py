"""Compute version discovery, no token: ``GET /compute/`` (200, both
versions: tempest wants 200 and ``v2.0`` first) and ``GET /compute/v2/``,
``GET /compute/v2.1/`` (200, the one). Every spelling with or without the
trailing slash answers without a redirect (keystoneauth asks without it);
each self link is the href of the same version in the list, which
keystoneauth then takes as the service's endpoint."""
from flask import Blueprint, jsonify

from nova_api import auth
from nova_api.openstack import urls
from nova_api.openstack.compute import microversion

bp = Blueprint("compute_versions", __name__)

MEDIA_TYPES = [{"base": "application/json",
                "type": "application/vnd.openstack.compute+json;version=2.1"}]


def _v20():
    return {"id": "v2.0", "status": "DEPRECATED", "version": "", "min_version": "",
            "updated": "2025-07-04T12:00:00Z",
            "links": [urls.link("self", "compute/v2", trailing_slash=True)]}


def _v21():
    return {"id": "v2.1", "status": "CURRENT",
            "version": microversion.text(microversion.MAX_VERSION),
            "min_version": microversion.text(microversion.MIN_VERSION),
            "updated": "2013-07-23T11:33:21Z",
            "links": [urls.link("self", "compute/v2.1", trailing_slash=True)]}


@bp.get("/compute/", strict_slashes=False)
@auth.public
def versions():
    return jsonify({"versions": [_v20(), _v21()]})


@bp.get("/compute/v2/", strict_slashes=False)
@auth.public
def v2():
    return jsonify({"version": dict(_v20(), **{"media-types": MEDIA_TYPES})})


@bp.get("/compute/v2.1/", strict_slashes=False)
@auth.public
def v21():
    return jsonify({"version": dict(_v21(), **{"media-types": MEDIA_TYPES})})
