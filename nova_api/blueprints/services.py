import datetime

from flask import Blueprint, current_app, jsonify

from common.db import api as db_api
from common.db import hosts as db_hosts
from common.db.models import utcnow
from nova_api import auth, validation, views

bp = Blueprint("services", __name__)
bp.before_request(validation.check_path_params)
# Service ids are SQL integers: a larger number is no route (404), not a DB error.
MAX_ID = 2 ** 31 - 1

UPDATE_SCHEMA = {
    "type": "object",
    "properties": {
        "status": {"enum": ["enabled", "disabled"]},
        "disabled_reason": {"type": "string", "maxLength": 255,
                            "pattern": validation.TEXT_PATTERN},
    },
    "required": ["status"],
    "additionalProperties": False,
}


def _ext():
    return current_app.extensions["mininova"]


def _down_after():
    return datetime.timedelta(seconds=_ext()["conf"].scheduler.service_down_time)


@bp.get("/v1/services")
@auth.admin_only
def index():
    with _ext()["db"].transaction() as s:
        services = db_api.service_list(s)
    now = utcnow()
    return jsonify({"services": [views.service(svc, now, _down_after()) for svc in services]})


@bp.put("/v1/services/<int(max=%d):service_id>" % MAX_ID)
@auth.admin_only
def update(service_id):
    """Disable a host for new VMs (those running there stay), or enable it."""
    body = validation.json_body(UPDATE_SCHEMA)
    with _ext()["db"].transaction() as s:
        svc = db_hosts.service_set_disabled(s, service_id, body["status"] == "disabled",
                                            body.get("disabled_reason"))
    return jsonify({"service": views.service(svc, utcnow(), _down_after())})


@bp.get("/v1/hosts")
@auth.admin_only
def hosts():
    conf = _ext()["conf"]
    with _ext()["db"].transaction() as s:
        rows = db_api.compute_hosts(s)
        vms = db_hosts.instances_by_host(s)
    now = utcnow()
    return jsonify({"hosts": [views.host(svc, node, conf, now, _down_after(),
                                         vms.get(node.host, []))
                              for svc, node in sorted(rows, key=lambda r: r[1].host)]})


@bp.get("/v1/hosts/<name>")
@auth.admin_only
def host(name):
    conf = _ext()["conf"]
    with _ext()["db"].transaction() as s:
        svc, node = db_hosts.host_get(s, name)
        vms = db_hosts.instances_by_host(s).get(name, [])
    return jsonify({"host": views.host(svc, node, conf, utcnow(), _down_after(), vms)})
