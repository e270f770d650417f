"""Flavors at 2.1: list (``{id, name, links}``), detail and show (exactly
tempest's ``common_flavor_info``: nothing of 2.55+ like ``description`` or
``extra_specs``), filtered by ``minRam``/``minDisk``/``is_public``, sorted
and paged as Nova does; an admin's create (200) and delete (202).

A private flavor is seen by admins and the projects it is shared with
(os-flavor-access); to anyone else it does not exist (404)."""
from flask import current_app, g, jsonify, request

from common import exception
from common.db import flavors as db_flavors
from nova_api import auth, validation
from nova_api.openstack.compute import paging, params, resource, views

bp = resource.blueprint("compute_flavors", __name__)

CREATE_SCHEMA = {
    "type": "object",
    "properties": {"flavor": {
        "type": "object",
        "properties": {
            "name": params.NAME,
            "id": {"type": ["string", "integer", "null"], "minLength": 1, "maxLength": 36,
                   "pattern": "^(?! )[a-zA-Z0-9. _-]+(?<! )$"},
            "ram": params.integer_or_string(),
            "vcpus": params.integer_or_string(),
            "disk": params.integer_or_string(),
            "OS-FLV-EXT-DATA:ephemeral": params.integer_or_string(),
            "swap": params.integer_or_string(),
            "rxtx_factor": {"type": ["number", "string"], "pattern": r"^[0-9]{1,18}(\.[0-9]+)?$"},
            "os-flavor-access:is_public": params.BOOLEAN,
            # openstacksdk's create_flavor always sends it, null unless
            # given: a description itself is 2.55's, refused at 2.1.
            "description": {"type": "null"},
        },
        "required": ["name", "ram", "vcpus"],
        "additionalProperties": False,
    }},
    "required": ["flavor"],
    "additionalProperties": False,
}


def _db():
    return current_app.extensions["mininova"]["db"]


def summary(flavor):
    return {"id": flavor.id, "name": flavor.name, "links": views.links("flavors", flavor.id)}


def detail(flavor):
    """The 2.1 detail view; ``swap`` is "" when there is none (Nova below 2.75)."""
    return {"id": flavor.id, "name": flavor.name, "ram": flavor.memory_mb,
            "vcpus": flavor.vcpus, "disk": flavor.root_gb, "swap": flavor.swap_mb or "",
            "OS-FLV-EXT-DATA:ephemeral": flavor.ephemeral_gb,
            "OS-FLV-DISABLED:disabled": flavor.disabled,
            "os-flavor-access:is_public": flavor.is_public,
            "rxtx_factor": flavor.rxtx_factor, "links": views.links("flavors", flavor.id)}


def visible(s, flavor_id):
    """The flavor if the caller may see it (else 404): for the flavor's
    sub-resources too."""
    return db_flavors.get(s, flavor_id, g.context.project_id, g.context.is_admin)


def _is_public_filter():
    """Nova's ``is_public`` query: absent is True, "none" (OSC sends the
    literal ``None``) all, else a boolean."""
    raw = request.args.get("is_public")
    if raw is None:
        return True
    if raw.strip().lower() == "none":
        return None
    return params.boolean("is_public", raw)


def _int_filter(name):
    raw = request.args.get(name)
    return None if raw is None else params.integer(name, raw.strip())


def _list(view, collection):
    limit, marker = paging.limit_and_marker()
    sort_key = request.args.get("sort_key") or "flavorid"
    sort_dir = request.args.get("sort_dir") or "asc"
    if sort_key not in db_flavors.SORT_KEYS:
        raise exception.ValidationError(field="sort_key", reason="must be one of %s" % ", ".join(
            sorted(db_flavors.SORT_KEYS)))
    if sort_dir not in ("asc", "desc"):
        raise exception.ValidationError(field="sort_dir", reason='must be "asc" or "desc"')
    with _db().transaction() as s:
        rows = db_flavors.page(s, g.context.project_id, g.context.is_admin,
                               is_public=_is_public_filter(), min_ram=_int_filter("minRam"),
                               min_disk=_int_filter("minDisk"), sort_key=sort_key,
                               sort_dir=sort_dir, limit=limit, marker=marker)
        items = [view(f) for f in rows]
    return jsonify({"flavors": items, **paging.links(collection, items, limit)})


@bp.get("/flavors")
def index():
    return _list(summary, "flavors")


@bp.get("/flavors/detail")
def index_detail():
    return _list(detail, "flavors/detail")


@bp.get("/flavors/<flavor_id>")
def show(flavor_id):
    with _db().transaction() as s:
        return jsonify({"flavor": detail(visible(s, flavor_id))})


@bp.post("/flavors")
@auth.admin_only
def create():
    body = validation.json_body(CREATE_SCHEMA)["flavor"]
    flavor_id = body.get("id")
    values = {
        "name": body["name"],
        "flavor_id": None if flavor_id is None else str(flavor_id),
        "memory_mb": params.integer("flavor.ram", body["ram"], minimum=1),
        "vcpus": params.integer("flavor.vcpus", body["vcpus"], minimum=1),
        "root_gb": params.integer("flavor.disk", body.get("disk", 0)),
        "ephemeral_gb": params.integer("flavor.OS-FLV-EXT-DATA:ephemeral",
                                       body.get("OS-FLV-EXT-DATA:ephemeral", 0)),
        "swap_mb": params.integer("flavor.swap", body.get("swap", 0)),
        "is_public": params.boolean("flavor.os-flavor-access:is_public",
                                    body.get("os-flavor-access:is_public", True)),
    }
    rxtx = float(body.get("rxtx_factor", 1.0))
    if not 0 < rxtx <= 3.4e38:
        raise exception.ValidationError(field="flavor.rxtx_factor", reason="must be > 0")
    with _db().transaction() as s:
        flavor = db_flavors.create(s, rxtx_factor=rxtx, **values)
        body = {"flavor": detail(flavor)}
    return jsonify(body)


@bp.delete("/flavors/<flavor_id>")
@auth.admin_only
def delete(flavor_id):
    with _db().transaction() as s:
        db_flavors.delete(s, flavor_id)
    current_app.extensions["mininova"]["vm_service"].lookups.forget_flavors()
    return "", 202
