"""Glance v2 images: ``POST /v2/images`` (201, ``queued``, no data yet),
``GET /v2/images`` (listing.py), ``GET /v2/images/{id}`` (and its import
tasks: none), ``PATCH`` with
a JSON patch (patch.py), ``DELETE`` (204; the file goes with it), and
adding or removing one tag.

Who may do what (Glance's default policies): anyone may see what
common/db/images.py says is visible, and anything else is 404; the owner's
project (member or admin) and admins change and delete, others who see the
image get 403. Only admins make an image public or give it another owner.
Deleting an image VMs were built from is allowed: their hosts keep the
cached base they boot from."""
import logging
import uuid

from flask import Blueprint, current_app, g, jsonify, request

from common import exception
from common.db import images as db_images
from nova_api import imagestore, validation
from nova_api.openstack import urls
from nova_api.openstack.image import listing, patch, schemas, views

LOG = logging.getLogger(__name__)

bp = Blueprint("image_images", __name__, url_prefix="/image/v2/images")
bp.before_request(validation.check_path_params)


def _db():
    return current_app.extensions["mininova"]["db"]


def render(s, image):
    return views.image(image, db_images.properties_of(s, [image.id])[image.id],
                       db_images.tags_of(s, [image.id])[image.id])


def check_may_write(ctxt, image, core):
    """403 for a change only an admin may make or one the caller's role
    does not allow."""
    if not db_images.owned_by(ctxt, image):
        raise exception.Forbidden("You are not allowed to modify image %s." % image.id)
    if core.get("visibility") == "public" and image.visibility != "public" \
            and not ctxt.is_admin:
        raise exception.Forbidden("Only an admin may make an image public.")
    if "owner" in core and core["owner"] != image.owner and not ctxt.is_admin:
        raise exception.Forbidden("Owner can't be updated by non admin.")


@bp.post("")
def create():
    ctxt = g.context
    core, properties = schemas.split(validation.json_body({"type": "object"}), creating=True)
    visibility = core.get("visibility", "shared")
    if visibility == "public" and not ctxt.is_admin:
        raise exception.Forbidden("Only an admin may make an image public.")
    owner = core.get("owner", ctxt.project_id)
    if owner != ctxt.project_id and not ctxt.is_admin:
        raise exception.Forbidden("You may only create images owned by your project.")
    values = {
        "id": str(uuid.UUID(core["id"])) if "id" in core else str(uuid.uuid4()),
        "name": core.get("name"), "disk_format": core.get("disk_format"),
        "container_format": core.get("container_format"), "visibility": visibility,
        "protected": core.get("protected", False), "os_hidden": core.get("os_hidden", False),
        "min_ram": core.get("min_ram", 0), "min_disk": core.get("min_disk", 0),
        "owner": owner, "status": "queued"}
    with _db().transaction() as s:
        image = db_images.create(s, values, properties, core.get("tags", ()))
        body = render(s, image)
    response = jsonify(body)
    response.status_code = 201
    response.headers["Location"] = urls.url("image/v2/images", image.id)
    return response


@bp.get("")
def index():
    query = listing.Query(request.args)
    with _db().transaction() as s:
        page, next_marker = query.fetch(s, g.context)
        ids = [i.id for i in page]
        properties, tags = db_images.properties_of(s, ids), db_images.tags_of(s, ids)
        bodies = [views.image(i, properties[i.id], tags[i.id]) for i in page]
    return jsonify(views.images(bodies, next_marker, request.args.items(multi=True),
                                query.limit))


@bp.get("/<image_id>")
def show(image_id):
    with _db().transaction() as s:
        return jsonify(render(s, db_images.get(s, g.context, image_id)))


@bp.patch("/<image_id>")
def update(image_id):
    changes = patch.read_changes()
    with _db().transaction() as s:
        image = db_images.get(s, g.context, image_id)
        check_may_write(g.context, image, {})
        properties = db_images.properties_of(s, [image.id])[image.id]
        tags = db_images.tags_of(s, [image.id])[image.id]
        core, properties = patch.apply(image, properties, tags, changes)
        check_may_write(g.context, image, core)
        if image.status != "queued":
            for name in ("disk_format", "container_format"):
                if core[name] != getattr(image, name):
                    raise exception.Forbidden("Attribute %s can be only replaced for a queued "
                                              "image." % name)
        tags = core.pop("tags")
        schemas.check_quotas(properties, tags)
        db_images.update(s, image, core, properties, tags)
        return jsonify(render(s, image))


@bp.get("/<image_id>/tasks")
def tasks(image_id):
    """Glance's import tasks of an image (2.12): mininova imports nothing
    asynchronously, so there are none (clients wait on them to be done)."""
    with _db().transaction() as s:
        db_images.get(s, g.context, image_id)
    return jsonify({"tasks": []})


@bp.delete("/<image_id>")
def delete(image_id):
    delete_image(g.context, image_id)
    return "", 204


def delete_image(ctxt, image_id):
    """Delete an image and its file (Glance's DELETE; also the compute
    API's deprecated images proxy): its owner or an admin, never a
    protected one (403)."""
    conf = current_app.extensions["mininova"]["conf"]
    with _db().transaction() as s:
        # A compute host discards the snapshot images it failed to fill, and
        # the backups a newer one rotates out.
        snapshot = db_images.service_writable(s, ctxt, image_id, conf.api.service_project,
                                              deleting=True)
        image = snapshot or db_images.get(s, ctxt, image_id)
        if snapshot is None and not db_images.owned_by(ctxt, image):
            raise exception.Forbidden("You are not allowed to delete image %s." % image.id)
        if image.protected:
            raise exception.Forbidden("Image %s is protected and cannot be deleted."
                                      % image.id)
        location = image.location
        db_images.delete(s, image)
    if location:
        imagestore.remove(location)


@bp.put("/<image_id>/tags/<tag>")
def add_tag(image_id, tag):
    validation.validate({"tags": [tag]}, schemas.IMAGE)
    with _db().transaction() as s:
        image = db_images.get(s, g.context, image_id)
        check_may_write(g.context, image, {})
        tags = db_images.tags_of(s, [image.id])[image.id]
        if tag not in tags:
            schemas.check_quotas({}, tags + [tag])
            db_images.update(s, image, {}, db_images.properties_of(s, [image.id])[image.id],
                             tags + [tag])
    return "", 204


@bp.delete("/<image_id>/tags/<tag>")
def remove_tag(image_id, tag):
    with _db().transaction() as s:
        image = db_images.get(s, g.context, image_id)
        check_may_write(g.context, image, {})
        tags = db_images.tags_of(s, [image.id])[image.id]
        if tag not in tags:
            raise exception.NotFound("Tag %s not found on image %s." % (tag[:255], image.id))
        tags.remove(tag)
        db_images.update(s, image, {}, db_images.properties_of(s, [image.id])[image.id], tags)
    return "", 204
