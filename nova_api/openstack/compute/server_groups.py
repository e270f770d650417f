"""Server groups at 2.1: ``{id, name, policies: [one], members, metadata}``
and nothing else (``policy``, ``rules``, ``project_id`` are later
microversions). Policies ``affinity`` and ``anti-affinity`` (the soft ones
come with 2.15); names need not be unique. Members are the live VMs created
in the group. A project sees its own groups; an admin any (listing all with
``?all_projects=True``). Create answers 200, delete 204; a project may hold
``server_groups`` of them (quota, 403 past it)."""
from flask import current_app, g, jsonify, request

from common.db import hosts as db_hosts
from common.db import quota_sets
from nova_api import validation
from nova_api.openstack.compute import params, resource

bp = resource.blueprint("compute_server_groups", __name__)

CREATE_SCHEMA = {
    "type": "object",
    "properties": {"server_group": {
        "type": "object",
        "properties": {
            "name": params.NAME,
            "policies": {"type": "array", "minItems": 1, "maxItems": 1,
                         "items": {"enum": list(db_hosts.POLICIES)}},
        },
        "required": ["name", "policies"],
        "additionalProperties": False,
    }},
    "required": ["server_group"],
    "additionalProperties": False,
}


def _ext():
    return current_app.extensions["mininova"]


def view(group, members):
    return {"id": group.id, "name": group.name, "policies": [group.policy],
            "members": [m.id for m in members], "metadata": {}}


def _scope():
    """The project whose groups the caller sees; None: all (an admin)."""
    return None if g.context.is_admin else g.context.project_id


@bp.post("/os-server-groups")
def create():
    body = validation.json_body(CREATE_SCHEMA)["server_group"]
    project_id = g.context.project_id
    with _ext()["db"].transaction() as s:
        # Read, then write: two concurrent creates may pass one over the limit.
        quota_sets.check_room(s, "server_groups", quota_sets.server_group_count(s, project_id),
                              project_id, _ext()["vm_service"].quota_defaults)
        group = db_hosts.group_create(s, project_id, body["name"], body["policies"][0])
        return jsonify({"server_group": view(group, [])})


def _offset_and_limit():
    """Nova's ``offset`` and ``limit`` of this list (integers >= 0)."""
    offset = request.args.get("offset")
    limit = request.args.get("limit")
    return (params.integer("offset", offset) if offset is not None else 0,
            params.integer("limit", limit) if limit is not None else None)


@bp.get("/os-server-groups")
def index():
    all_projects = request.args.get("all_projects")
    offset, limit = _offset_and_limit()
    with _ext()["db"].transaction() as s:
        if g.context.is_admin and all_projects and params.boolean("all_projects", all_projects):
            groups = db_hosts.group_list_all(s)
        else:
            groups = db_hosts.group_list(s, g.context.project_id)
        groups = groups[offset:None if limit is None else offset + limit]
        return jsonify({"server_groups": [view(grp, db_hosts.group_members(s, grp.id))
                                          for grp in groups]})


@bp.get("/os-server-groups/<group_id>")
def show(group_id):
    with _ext()["db"].transaction() as s:
        group = db_hosts.group_get_by_id(s, group_id, _scope())
        return jsonify({"server_group": view(group, db_hosts.group_members(s, group.id))})


@bp.delete("/os-server-groups/<group_id>")
def delete(group_id):
    with _ext()["db"].transaction() as s:
        db_hosts.group_delete_by_id(s, group_id, _scope())
    return "", 204
