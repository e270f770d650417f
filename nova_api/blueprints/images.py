import os

from flask import Blueprint, current_app, g, jsonify, request, send_file

from common import exception
from common.db import api as db_api
from common.db import images as db_images
from nova_api import imagestore
from nova_api import auth, validation, views

bp = Blueprint("images", __name__, url_prefix="/v1/images")
bp.before_request(validation.check_path_params)

UPLOAD_PARAMS = {
    "type": "object",
    "properties": {
        "name": validation.LONG_NAME,
        "min_ram": {"type": "integer", "minimum": 0, "maximum": 16 * 1024 * 1024},
        "min_disk": {"type": "integer", "minimum": 0, "maximum": 64 * 1024},
    },
    "required": ["name"],
    "additionalProperties": False,
}


def _db():
    return current_app.extensions["mininova"]["db"]


def _visible(s, ref, for_compute=False):
    """The image ``ref`` names among those the caller may see (as in Glance
    v2); ``for_compute``: among all if the caller is a compute host's
    service user."""
    conf = current_app.extensions["mininova"]["conf"]
    if for_compute and db_images.may_fetch_any(s, g.context, conf.api.service_project):
        return db_api.image_get(s, ref)
    return db_api.image_get(s, ref, g.context)


@bp.get("")
def index():
    with _db().transaction() as s:
        return jsonify({"images": [views.image(i) for i in db_api.image_list(s)
                                   if db_images.visible_to(g.context, i)]})


@bp.get("/<ref>")
def show(ref):
    with _db().transaction() as s:
        return jsonify({"image": views.image(_visible(s, ref))})


@bp.get("/<ref>/file")
def download(ref):
    """The image's bytes, for compute hosts filling their image cache."""
    with _db().transaction() as s:
        image = _visible(s, ref, for_compute=True)
    if image.location is None:
        raise exception.ImageStatusConflict(image=image.id, status=image.status,
                                            needed="active")
    if not os.path.exists(image.location):
        raise exception.ImageUnavailable(image=image.id, reason="its file is missing "
                                         "from the image store")
    response = send_file(image.location, mimetype="application/octet-stream",
                         conditional=False, etag=False, max_age=0)
    response.headers["X-Image-Sha256"] = image.checksum
    return response


@bp.post("")
@auth.admin_only
def upload():
    """``POST /v1/images?name=N[&min_ram=MB][&min_disk=GB]`` with the qcow2
    file as an application/octet-stream body."""
    if request.mimetype != "application/octet-stream":
        raise exception.UnsupportedMediaType(content_type=request.mimetype or "(none)")
    params = validation.query_params(UPLOAD_PARAMS)
    conf = current_app.extensions["mininova"]["conf"]
    stored = imagestore.import_stream(conf, request.stream, max_bytes=conf.api.max_image_bytes)
    try:
        with _db().transaction() as s:
            image = db_api.image_create(
                s, id=stored.image_id, name=params["name"], disk_format="qcow2",
                min_ram=params.get("min_ram", 0), min_disk=params.get("min_disk", 0),
                status="active", **stored.columns())
    except BaseException:
        imagestore.remove(stored.path)
        raise
    response = jsonify({"image": views.image(image)})
    response.status_code = 201
    response.headers["Location"] = "/v1/images/%s" % image.id
    return response
