"""A server's instance actions at 2.1 (``os-instance-actions``), exactly
tempest's v2_1 keys: ``{action, instance_uuid, request_id, user_id,
project_id, start_time, message}`` (``finish_time``, ``result``, ``host``
come with later microversions), newest first; the show adds ``events``
``{event, start_time, finish_time, result}`` with Nova's results "Success" and
"Error", plus ``traceback`` for admins only.

Names are Nova's: a hard reboot, which the timeline records as
``reboot_hard`` (/v1's name), is ``reboot``. Actions the timeline created
for steps that arrived without one (``unknown``) are no user request and are
not listed. A deleted server's actions stay readable by id, as on /v1."""
from flask import g, jsonify

from common import exception
from common.db import actions
from common.db import api as db_api
from nova_api.openstack.compute import resource, server_lookup, views

bp = resource.blueprint("compute_instance_actions", __name__)

# The timeline's names -> Nova's.
NOVA_NAMES = {"reboot_hard": "reboot", "confirm_resize": "confirmResize",
              "revert_resize": "revertResize"}
RESULTS = {actions.SUCCESS: "Success", actions.ERROR: "Error"}
# What a 404 repeats of an unknown request id.
_SHOWN = 64


def _instance_id(server_id):
    """The id of the server the caller may address, live or, by id, deleted
    (when the caller's project, or for an admin any, has actions of it)."""
    try:
        return server_lookup.server(server_id).id
    except exception.InstanceNotFound:
        if db_api.is_uuid(server_id):
            with server_lookup.db().transaction() as s:
                if actions.action_list(s, server_id, project_id=server_lookup.scope()):
                    return server_id
        raise


def view(action):
    return {"action": NOVA_NAMES.get(action.action, action.action),
            "instance_uuid": action.instance_id, "request_id": action.request_id,
            "user_id": action.user_id or "", "project_id": action.project_id or "",
            "start_time": views.naive_isotime(action.start_time), "message": action.message}


def event_view(event, is_admin):
    body = {"event": event.event, "start_time": views.naive_isotime(event.start_time),
            "finish_time": views.naive_isotime(event.finish_time),
            "result": RESULTS.get(event.result, event.result)}
    if is_admin:
        body["traceback"] = event.details if event.result == actions.ERROR else None
    return body


@bp.get("/servers/<server_id>/os-instance-actions")
def index(server_id):
    instance_id = _instance_id(server_id)
    with server_lookup.db().transaction() as s:
        rows = actions.action_list(s, instance_id, project_id=server_lookup.scope())
        return jsonify({"instanceActions": [view(a) for a in rows
                                            if a.action != actions.UNKNOWN_ACTION]})


@bp.get("/servers/<server_id>/os-instance-actions/<request_id>")
def show(server_id, request_id):
    instance_id = _instance_id(server_id)
    with server_lookup.db().transaction() as s:
        try:
            action, events = actions.action_get(s, instance_id, request_id)
        except exception.InstanceActionNotFound:
            action = None
        scope = server_lookup.scope()
        if action is None or (scope is not None and action.project_id != scope):
            raise exception.InstanceActionNotFound(request_id=request_id[:_SHOWN],
                                                   instance=instance_id)
        body = view(action)
        body["events"] = [event_view(e, g.context.is_admin) for e in events]
        return jsonify({"instanceAction": body})
