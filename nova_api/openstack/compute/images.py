"""Nova's deprecated images proxy at 2.1 (removed at 2.36): ``GET /images``,
``GET /images/detail``, ``GET /images/{id}``, ``DELETE /images/{id}`` (204),
over the same images and rules as Glance v2 (what the caller may see; its
owner or an admin deletes). Tempest's snapshot tests wait on it.

The detail view is Nova's: ``status`` in Nova's names (queued and saving are
SAVING, killed ERROR, deleted DELETED), ``progress`` (25 queued, 50 saving,
100 active), ``minRam``/``minDisk``, ``metadata`` (the extra properties),
``OS-EXT-IMG-SIZE:size``, ``server`` when the image is a snapshot of one,
and links (self, bookmark, and the image service's ``alternate``).

Filters as Nova's: ``name``, ``status`` (Nova's names), ``server`` (an
``instance_uuid``), ``type`` (``image_type``: snapshot or backup),
``minRam``, ``minDisk`` (at least), ``changes-since`` (updated since, as
for servers), ``limit`` and ``marker``."""
import sqlalchemy as sa
from flask import current_app, g, jsonify, request

from common import exception
from common.db import images as db_images
from common.db.models import Image
from nova_api.openstack import urls
from nova_api.openstack.compute import params, resource, servers, views
from nova_api.openstack.image import images as glance_images

bp = resource.blueprint("compute_images", __name__)

STATUS = {"active": "ACTIVE", "queued": "SAVING", "saving": "SAVING", "killed": "ERROR",
          "deleted": "DELETED", "pending_delete": "DELETED", "deactivated": "UNKNOWN",
          "uploading": "SAVING", "importing": "SAVING"}
PROGRESS = {"queued": 25, "saving": 50, "active": 100}


def _db():
    return current_app.extensions["mininova"]["db"]


def _links(image_id):
    links = urls.resource_links("compute/v2.1", "compute", "images", image_id,
                                project_id=resource.url_project_id())
    links.append({"rel": "alternate", "type": "application/vnd.openstack.image",
                  "href": urls.url("image", "images", image_id)})
    return links


def _summary(image):
    return {"id": image.id, "name": image.name, "links": _links(image.id)}


def _detail(image, properties):
    body = {"id": image.id, "name": image.name, "status": STATUS.get(image.status, "UNKNOWN"),
            "progress": PROGRESS.get(image.status, 0), "minRam": image.min_ram or 0,
            "minDisk": image.min_disk or 0, "metadata": properties,
            "created": views.isotime(image.created_at),
            "updated": views.isotime(image.updated_at or image.created_at),
            "OS-EXT-IMG-SIZE:size": image.size, "links": _links(image.id)}
    server = properties.get("instance_uuid")
    if server:
        body["server"] = {"id": server, "links": urls.resource_links(
            "compute/v2.1", "compute", "servers", server,
            project_id=resource.url_project_id())}
    return body


def _query(s, ctxt):
    args = request.args
    conditions, properties = [], {}
    if "name" in args:
        conditions.append(Image.name == args["name"])
    if "status" in args:
        wanted = [k for k, v in STATUS.items() if v == args["status"].upper()]
        conditions.append(Image.status.in_(wanted))
    for name, column in (("minRam", Image.min_ram), ("minDisk", Image.min_disk)):
        if name in args:
            conditions.append(column >= params.integer(name, args[name]))
    changed = servers.changes_since()
    if changed is not None:
        conditions.append(sa.func.coalesce(Image.updated_at, Image.created_at) >= changed)
    if "server" in args:
        properties["instance_uuid"] = args["server"].rstrip("/").rsplit("/", 1)[-1]
    if "type" in args:
        if args["type"] not in ("snapshot", "backup"):
            raise exception.ValidationError(field="type", reason="must be snapshot or backup")
        properties["image_type"] = args["type"]
    rows = db_images.query(s, ctxt, conditions=conditions, properties=properties)
    rows.sort(key=lambda i: (i.created_at, i.id), reverse=True)  # newest first, as Glance
    if "marker" in args:
        ids = [i.id for i in rows]
        if args["marker"] not in ids:
            raise exception.MarkerNotFound(marker=args["marker"][:64])
        rows = rows[ids.index(args["marker"]) + 1:]
    if "limit" in args:
        rows = rows[:params.integer("limit", args["limit"])]
    return rows


@bp.get("/images")
def index():
    with _db().transaction() as s:
        return jsonify({"images": [_summary(i) for i in _query(s, g.context)]})


@bp.get("/images/detail")
def detail():
    with _db().transaction() as s:
        rows = _query(s, g.context)
        properties = db_images.properties_of(s, [i.id for i in rows])
        return jsonify({"images": [_detail(i, properties[i.id]) for i in rows]})


@bp.get("/images/<image_id>")
def show(image_id):
    with _db().transaction() as s:
        image = db_images.get(s, g.context, image_id)
        return jsonify({"image": _detail(image, db_images.properties_of(s, [image.id])[
            image.id])})


@bp.delete("/images/<image_id>")
def delete(image_id):
    glance_images.delete_image(g.context, image_id)
    return "", 204
