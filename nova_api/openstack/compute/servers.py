"""/servers at 2.1: create (202; the body checked in ``server_requests``),
list and detail (Nova's filters, newest first, paged), show by id only (a
name is 404: clients resolve names with ``?name=``, and would silently pick
one of several VMs of one name otherwise), update of the name and access
IPs (200, the basic view), delete (204; the server stays visible with
task_state ``deleting`` until it is gone).

Admins see every project's servers by id, and lists of other projects with
``all_tenants`` or ``project_id``/``tenant_id``; for anyone else those are
ignored, as is every parameter Nova ignores at 2.1 (``deleted`` included,
which OSC always sends)."""
import datetime
import logging

from flask import current_app, g, jsonify, request

from common import exception
from common.db import instance_metadata
from common.db import servers as db_servers
from nova_api import validation
from nova_api.openstack.compute import (paging, params, resource, server_lookup,
                                        server_requests, server_views, views)

LOG = logging.getLogger(__name__)

bp = resource.blueprint("compute_servers", __name__)


def _db():
    return current_app.extensions["mininova"]["db"]


def _vm_service():
    return current_app.extensions["mininova"]["vm_service"]


def _network_name():
    return current_app.extensions["mininova"]["conf"].compute.network_name


def views_for(s, instances):
    """A ServerViews for ``instances`` (their metadata read at once)."""
    return server_views.ServerViews(
        _network_name(), g.context.is_admin,
        metadata=instance_metadata.get_many(s, [i.id for i in instances]))


def _list_scope():
    """The project a list covers: admins may name one (``project_id`` or
    ``tenant_id``) or ask for all (``all_tenants``, bare or a boolean)."""
    ctxt = g.context
    if not ctxt.is_admin:
        return ctxt.project_id
    named = request.args.get("project_id") or request.args.get("tenant_id")
    if named:
        return named
    raw = request.args.get("all_tenants")
    if raw is not None and (raw.strip() == "" or params.boolean("all_tenants", raw)):
        return None
    return ctxt.project_id


def _last_segment(value):
    """An id, or an href whose last path segment is the id."""
    return value.rstrip("/").rsplit("/", 1)[-1] if value is not None else None


def changes_since():
    """The ``changes-since`` query parameter as a naive UTC datetime, or None
    (400 unless ISO 8601); the images proxy filters by it too."""
    raw = request.args.get("changes-since")
    if raw is None:
        return None
    text = raw.strip()
    # An unencoded "+" of a UTC offset arrives as a space.
    if " " in text and "T" in text:
        text = text.replace(" ", "+")
    try:
        when = datetime.datetime.fromisoformat(text)
        if when.tzinfo is not None:
            when = when.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    except (ValueError, OverflowError):   # overflow: e.g. year 1 at +01:00 is year 0 in UTC
        raise exception.ValidationError(
            field="changes-since", reason="must be an ISO 8601 date and time") from None
    return when


# Query parameters compared in the database, where NUL cannot be (PostgreSQL).
_COMPARED = ("image", "flavor", "project_id", "tenant_id", "name", "ip", "ip6", "status")


def _filters():
    args = request.args
    for key in _COMPARED:
        if "\x00" in args.get(key, ""):
            raise exception.ValidationError(field=key, reason="must not contain NUL characters")
    return db_servers.Filters(
        name=args.get("name"), status=args.get("status"),
        image=_last_segment(args.get("image")), flavor=_last_segment(args.get("flavor")),
        ip=args.get("ip"), ip6=args.get("ip6"), changes_since=changes_since())


def _list(detailed, collection):
    limit, marker = paging.limit_and_marker()
    filters = _filters()
    with _db().transaction() as s:
        found = db_servers.page(s, _list_scope(), filters, limit, marker,
                                status_of=server_views.status)
        if detailed:
            server_view = views_for(s, found)
            items = [server_view.detail(inst) for inst in found]
        else:
            items = [server_views.summary(inst) for inst in found]
    return jsonify({"servers": items, **paging.links(collection, items, limit)})


@bp.get("/servers")
def index():
    return _list(False, "servers")


@bp.get("/servers/detail")
def index_detail():
    return _list(True, "servers/detail")


@bp.get("/servers/<server_id>")
def show(server_id):
    with _db().transaction() as s:
        inst = server_lookup.server_in(s, server_id)
        return jsonify({"server": views_for(s, [inst]).detail(inst)})


@bp.put("/servers/<server_id>")
def update(server_id):
    changes = server_requests.update_arguments(
        validation.json_body(server_requests.UPDATE_SCHEMA))
    with _db().transaction() as s:
        inst = server_lookup.server_in(s, server_id)
    if changes:
        _vm_service().update(server_lookup.acting_context(inst), inst.id, **changes)
    with _db().transaction() as s:
        inst = db_servers.get(s, inst.id)
        return jsonify({"server": views_for(s, [inst]).basic(inst)})


@bp.delete("/servers/<server_id>")
def delete(server_id):
    with _db().transaction() as s:
        inst = server_lookup.server_in(s, server_id)
    _vm_service().delete(server_lookup.acting_context(inst), inst.id)
    return "", 204


@bp.post("/servers")
def create():
    wanted = server_requests.CreateRequest(
        validation.json_body(server_requests.CREATE_SCHEMA), _network_name())
    created = _create_servers(wanted)
    links = views.links("servers", created[0]["id"])
    # Several servers: Nova answers the first (without return_reservation_id).
    response = jsonify({"server": {
        "id": created[0]["id"], "links": links, "OS-DCF:diskConfig": created[0]["disk_config"],
        "security_groups": [{"name": server_requests.SECURITY_GROUP}],
        "adminPass": wanted.password}})
    response.status_code = 202
    response.headers["Location"] = links[0]["href"]
    return response


def _create_servers(wanted):
    """The rows of the servers created: all of ``wanted.names``, or as many
    as the quota allows if that is at least ``wanted.min_count``; else none
    (those created are deleted again) and the error."""
    service, created = _vm_service(), []
    try:
        for name in wanted.names:
            try:
                created.append(service.create(g.context, name, *wanted.args, **wanted.kwargs))
            except exception.QuotaExceeded:
                if len(created) < wanted.min_count:
                    raise
                break
    except (exception.ImageNotFound, exception.FlavorNotFound,
            exception.ServerGroupNotFound) as e:
        _delete_quietly(created)
        # What the body names must exist: Nova answers 400, not 404.
        raise exception.Invalid(reason=e.message) from e
    except Exception:
        _delete_quietly(created)
        raise
    return created


def _delete_quietly(rows):
    for row in rows:
        try:
            _vm_service().delete(g.context, row["id"])
        except exception.MininovaException as e:
            LOG.warning("server %s of a failed create not deleted: %s", row["id"],
                        exception.describe(e))
