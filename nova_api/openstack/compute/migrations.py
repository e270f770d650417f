"""``GET /os-migrations`` at 2.1 (admin only): every move, newest first,
with 2.1's fields exactly (tempest's v2_1 schema): ``id`` (integer),
``instance_uuid``, ``source_node``/``source_compute`` (the source host),
``dest_node``/``dest_compute``/``dest_host`` (the destination, None until
chosen), ``status``, ``old_instance_type_id``/``new_instance_type_id`` (the
flavor ids where they are integers, else None), ``created_at``,
``updated_at``. Nova's filters: ``host`` (source or destination),
``status``, ``instance_uuid``, ``migration_type``, ``source_compute``;
others are ignored, as Nova does at 2.1.

``/servers/{id}/migrations`` arrived at microversion 2.22 (in-progress live
migrations): at 2.1 it is no route, a 404 as Nova's."""
from flask import current_app, jsonify, request

from nova_api import auth
from nova_api.openstack.compute import resource, views

bp = resource.blueprint("compute_migrations", __name__)


def _flavor_number(flavor_id):
    return int(flavor_id) if flavor_id is not None and flavor_id.isdigit() else None


def migration(row):
    return {"id": row.id, "status": row.status, "instance_uuid": row.instance_id,
            "source_node": row.source_host, "source_compute": row.source_host,
            "dest_node": row.dest_host, "dest_compute": row.dest_host,
            "dest_host": row.dest_host,
            "old_instance_type_id": _flavor_number(row.old_flavor_id),
            "new_instance_type_id": _flavor_number(row.new_flavor_id),
            "created_at": views.naive_isotime(row.created_at),
            "updated_at": views.naive_isotime(row.updated_at)}


@bp.get("/os-migrations")
@auth.admin_only
def index():
    args = request.args
    rows = current_app.extensions["mininova"]["move_service"].migrations(
        None, host=args.get("host"), status=args.get("status"),
        migration_type=args.get("migration_type"), instance_id=args.get("instance_uuid"))
    source = args.get("source_compute")
    return jsonify({"migrations": [migration(r) for r in rows
                                   if source is None or r.source_host == source]})
