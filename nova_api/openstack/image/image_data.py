"""Glance v2 image data: ``PUT /v2/images/{id}/file`` (204) and
``GET /v2/images/{id}/file`` (200, or 204 while there is none).

An upload moves the image queued -> saving before the first byte is read
(a second upload meanwhile gets 409), streams the body into the image store
a chunk at a time (nova_api/imagestore.py: at most ``[api] max_image_bytes``,
checked to be in the image's disk format, hashed on the way), then saving ->
active with its size and hashes; with a ``Content-MD5`` header, only if the
data has that md5 (what a compute host uploading a snapshot sends). Any failure puts the image back to queued
with nothing stored, as Glance does; an image deleted during its upload
keeps no file. The owner's project (members too) and admins may upload;
so may a compute host's service user to a snapshot image not active yet
(common/db/images.py service_writable)."""
import base64
import binascii
import os

from flask import Blueprint, current_app, g, request, send_file

from common import exception
from common.db import images as db_images
from nova_api import imagestore, validation

bp = Blueprint("image_data", __name__, url_prefix="/image/v2/images")
bp.before_request(validation.check_path_params)

OCTET_STREAM = "application/octet-stream"


def _db():
    return current_app.extensions["mininova"]["db"]


def _begin(image_id):
    """The image's disk format, once it is ``saving`` for this upload. A
    compute host's service user uploads snapshots of any project's VMs."""
    conf = current_app.extensions["mininova"]["conf"]
    with _db().transaction() as s:
        snapshot = db_images.service_writable(s, g.context, image_id, conf.api.service_project)
        image = snapshot or db_images.get(s, g.context, image_id)
        if snapshot is None and not db_images.owned_by(g.context, image):
            raise exception.Forbidden("Not allowed to upload image data for image %s."
                                      % image.id)
        if image.disk_format is None or image.container_format is None:
            raise exception.Invalid(reason="Properties disk_format, container_format must be "
                                    "set prior to saving data.")
        if not db_images.start_upload(s, image.id):
            raise exception.ImageStatusConflict(image=image.id, status=image.status,
                                                needed="queued")
        return image.id, image.disk_format


def _content_md5():
    """The md5 (hex) the request's ``Content-MD5`` header (RFC 1864: base64)
    says the data has, or None; the data must have it to become active."""
    header = request.headers.get("Content-MD5")
    if header is None:
        return None
    try:
        digest = base64.b64decode(header, validate=True)
    except (binascii.Error, ValueError):
        digest = b""
    if len(digest) != 16:
        raise exception.ValidationError(field="Content-MD5",
                                        reason="must be the base64 of a 16-byte md5 digest")
    return digest.hex()


@bp.put("/<image_id>/file")
def upload(image_id):
    if request.mimetype != OCTET_STREAM:
        raise exception.UnsupportedMediaType(
            "Unsupported content type '%s'; use %s." % ((request.mimetype or "(none)")[:100],
                                                         OCTET_STREAM))
    expected_md5 = _content_md5()
    image_id, disk_format = _begin(image_id)
    conf = current_app.extensions["mininova"]["conf"]
    try:
        stored = imagestore.write(conf, image_id, request.stream, conf.api.max_image_bytes,
                                  disk_format=disk_format, allow_empty=True)
        if expected_md5 is not None and stored.md5 != expected_md5:
            imagestore.remove(stored.path)
            raise exception.Invalid(reason="the data's md5 is %s, not the Content-MD5 %s"
                                    % (stored.md5, expected_md5))
    except BaseException:
        with _db().transaction() as s:
            db_images.abandon_upload(s, image_id)
        raise
    try:
        with _db().transaction() as s:
            finished = db_images.finish_upload(s, image_id, stored.columns())
    except BaseException:
        imagestore.remove(stored.path)
        raise
    if not finished:
        imagestore.remove(stored.path)
        raise exception.ImageStatusConflict(image=image_id, status="deleted",
                                            needed="saving until its upload ended")
    # What was stored (the header names of Glance v1 and of /v1's downloads).
    return "", 204, {"X-Image-Meta-Checksum": stored.md5, "X-Image-Sha256": stored.checksum}


@bp.get("/<image_id>/file")
def download(image_id):
    with _db().transaction() as s:
        image = db_images.get(s, g.context, image_id)
        if image.status == "deactivated" and not g.context.is_admin:
            raise exception.Forbidden("The requested image has been deactivated. Image data "
                                      "download is forbidden.")
        location, md5 = image.location, image.md5
        active = image.status in ("active", "deactivated")
    if not active or location is None:
        return "", 204
    if not os.path.exists(location):
        raise exception.ImageUnavailable(image=image_id, reason="its file is missing from "
                                         "the image store")
    response = send_file(location, mimetype=OCTET_STREAM, conditional=False, etag=False,
                         max_age=0)
    if md5:
        response.headers["Content-MD5"] = md5
    return response
