"""Migrations (moves of VMs between hosts) on /v1: ``GET /v1/migrations``
(admins: every move, filtered by host, status and type) and
``GET /v1/vms/<ref>/migrations`` (a VM's own, for whoever sees the VM),
newest first; each with its source, destination, type, status, flavors,
timestamps and the request id of the action that started it (its steps are
that action's events: ``GET /v1/vms/<ref>/actions/<request_id>``)."""
from flask import Blueprint, current_app, g, jsonify

from common import states
from nova_api import auth, validation, views

bp = Blueprint("migrations", __name__)
bp.before_request(validation.check_path_params)

LIST_PARAMS = {
    "type": "object",
    "properties": {
        "host": {"type": "string", "minLength": 1, "maxLength": 255,
                 "pattern": validation.TEXT_PATTERN,
                 "description": "Only moves from or to this host."},
        "status": {"type": "string", "minLength": 1, "maxLength": 16,
                   "pattern": validation.TEXT_PATTERN,
                   "description": "Only moves in this status (e.g. finished, confirmed, "
                                  "reverted, error)."},
        "type": {"enum": list(states.MIGRATION_TYPES),
                 "description": "Only moves of this type."},
        "limit": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 1000,
                  "description": "At most this many, newest first."},
    },
    "additionalProperties": True,
}


def _moves():
    return current_app.extensions["mininova"]["move_service"]


def migration(row):
    """The /v1 view of a migration row."""
    return {"id": row.uuid, "vm": row.instance_id, "type": row.migration_type,
            "status": row.status, "source": row.source_host, "destination": row.dest_host,
            "old_flavor": row.old_flavor_id, "new_flavor": row.new_flavor_id,
            "request_id": row.request_id, "created_at": views.isotime(row.created_at),
            "updated_at": views.isotime(row.updated_at),
            # A live migration's progress (bytes) as its source last reported it;
            # null for other moves and before the first report (Nova 2.23's names).
            **{"%s_%s_bytes" % (kind, key): getattr(row, "%s_%s" % (kind, key))
               for kind in ("memory", "disk") for key in ("total", "processed", "remaining")}}


@bp.get("/v1/migrations")
@auth.admin_only
def index():
    query = validation.query_params(LIST_PARAMS)
    rows = _moves().migrations(g.context, host=query.get("host"), status=query.get("status"),
                               migration_type=query.get("type"), limit=query["limit"])
    return jsonify({"migrations": [migration(r) for r in rows]})


@bp.get("/v1/vms/<ref>/migrations")
def of_vm(ref):
    _inst, rows = _moves().vm_migrations(g.context, ref)
    return jsonify({"migrations": [migration(r) for r in rows]})
