"""os-services at 2.1 (admin only): the services table under Nova's binary
names (``mininova-compute`` is ``nova-compute``...), in Nova's zones
(``nova`` for computes, ``internal`` for the rest), up while their
heartbeat is younger than ``[scheduler] service_down_time``. A disabled
compute takes no new VMs; those on it stay.

PUT ``/os-services/{enable,disable,disable-log-reason}`` take the 2.1 body
``{"host", "binary"[, "disabled_reason"]}`` and answer ``{"service": {host,
binary, status[, disabled_reason]}}``."""
import datetime

from flask import current_app, jsonify, request

from common import exception
from common.db import api as db_api
from common.db import hosts as db_hosts
from common.db.models import utcnow
from nova_api import auth, validation
from nova_api.openstack.compute import resource, views

bp = resource.blueprint("compute_services", __name__)

COMPUTE = "mininova-compute"
NOVA_BINARIES = {COMPUTE: "nova-compute", "mininova-scheduler": "nova-scheduler",
                 "mininova-conductor": "nova-conductor"}
MININOVA_BINARIES = {nova: ours for ours, nova in NOVA_BINARIES.items()}

UPDATE_SCHEMA = {
    "type": "object",
    "properties": {
        "host": {"type": "string", "minLength": 1, "maxLength": 255,
                 "pattern": validation.REF_PATTERN},
        "binary": {"type": "string", "minLength": 1, "maxLength": 255,
                   "pattern": validation.REF_PATTERN},
    },
    "required": ["host", "binary"],
    "additionalProperties": False,
}
REASON_SCHEMA = dict(UPDATE_SCHEMA, properties=dict(
    UPDATE_SCHEMA["properties"], disabled_reason={
        "type": "string", "minLength": 1, "maxLength": 255,
        "pattern": validation.TEXT_PATTERN}),
    required=["host", "binary", "disabled_reason"])


def nova_binary(binary):
    return NOVA_BINARIES.get(binary, binary)


def zone(svc):
    return "nova" if svc.binary == COMPUTE else "internal"


class Liveness:
    """Whether services are up, judged at one instant."""

    def __init__(self):
        conf = current_app.extensions["mininova"]["conf"]
        self.now = utcnow()
        self.down_after = datetime.timedelta(seconds=conf.scheduler.service_down_time)

    def is_up(self, svc):
        return (svc.last_heartbeat is not None
                and self.now - svc.last_heartbeat <= self.down_after)

    def state(self, svc):
        return "up" if self.is_up(svc) else "down"


def status(svc):
    return "disabled" if svc.disabled else "enabled"


def view(svc, liveness):
    return {"id": svc.id, "binary": nova_binary(svc.binary), "host": svc.host,
            "zone": zone(svc), "status": status(svc), "state": liveness.state(svc),
            "updated_at": views.naive_isotime(svc.last_heartbeat),
            "disabled_reason": svc.disabled_reason}


def _db():
    return current_app.extensions["mininova"]["db"]


@bp.get("/os-services")
@auth.admin_only
def index():
    """Filtered by ``host`` and ``binary``; other parameters are ignored."""
    host, binary = request.args.get("host"), request.args.get("binary")
    with _db().transaction() as s:
        services = db_api.service_list(s)
    liveness = Liveness()
    return jsonify({"services": [
        view(svc, liveness) for svc in services
        if (host is None or svc.host == host)
        and (binary is None or nova_binary(svc.binary) == binary)]})


def _set(disabled, schema):
    body = validation.json_body(schema)
    reason = body.get("disabled_reason")
    with _db().transaction() as s:
        try:
            svc = db_hosts.service_get_by_host_binary(
                s, body["host"], MININOVA_BINARIES.get(body["binary"], body["binary"]))
        except exception.ServiceNotFound:
            raise exception.NotFound("Unknown service %s on host %s." % (
                body["binary"][:64], body["host"][:255])) from None
        db_hosts.service_set_disabled(s, svc.id, disabled, reason)
    answer = {"host": body["host"], "binary": body["binary"],
              "status": "disabled" if disabled else "enabled"}
    if reason is not None:
        answer["disabled_reason"] = reason
    return jsonify({"service": answer})


@bp.put("/os-services/enable")
@auth.admin_only
def enable():
    return _set(False, UPDATE_SCHEMA)


@bp.put("/os-services/disable")
@auth.admin_only
def disable():
    return _set(True, UPDATE_SCHEMA)


@bp.put("/os-services/disable-log-reason")
@auth.admin_only
def disable_log_reason():
    return _set(True, REASON_SCHEMA)
