"""os-availability-zone at 2.1. mininova has one zone for VMs, ``nova``
(every compute host), and Nova's ``internal`` zone for the other services.

- the list (anyone): the zones VMs can go to, ``hosts`` null; a zone is
  available while one of its computes is enabled;
- ``/detail`` (admins): every zone with its hosts and their services,
  each ``{available: up, active: enabled, updated_at}`` as Nova has it."""
from flask import current_app, jsonify

from common.db import api as db_api
from nova_api import auth
from nova_api.openstack.compute import resource, services, views

bp = resource.blueprint("compute_availability_zones", __name__)


def _zones():
    """{zone: [services]}, ``internal`` first, as Nova orders them."""
    with current_app.extensions["mininova"]["db"].transaction() as s:
        rows = db_api.service_list(s)
    zones = {}
    for svc in sorted(rows, key=lambda svc: (services.zone(svc) != "internal", svc.host)):
        zones.setdefault(services.zone(svc), []).append(svc)
    return zones


def _available(members):
    return any(not svc.disabled for svc in members)


@bp.get("/os-availability-zone")
def index():
    return jsonify({"availabilityZoneInfo": [
        {"zoneName": name, "zoneState": {"available": _available(members)}, "hosts": None}
        for name, members in _zones().items() if name != "internal"]})


@bp.get("/os-availability-zone/detail")
@auth.admin_only
def detail():
    liveness = services.Liveness()
    info = []
    for name, members in _zones().items():
        hosts = {}
        for svc in members:
            hosts.setdefault(svc.host, {})[services.nova_binary(svc.binary)] = {
                "available": liveness.is_up(svc), "active": not svc.disabled,
                "updated_at": views.naive_isotime(svc.last_heartbeat)}
        info.append({"zoneName": name, "zoneState": {"available": _available(members)},
                     "hosts": hosts})
    return jsonify({"availabilityZoneInfo": info})
