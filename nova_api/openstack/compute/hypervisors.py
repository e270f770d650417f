"""os-hypervisors at 2.1 (admin only): each compute host that reported its
capacity, under the integer id of its compute service (stable for the
host's life; UUID ids are 2.53). Exactly the 2.1 keys: ``cpu_info`` is a
JSON string, ``statistics`` still exists (gone at 2.88).

The "used" figures are what the scheduler claimed on the host, as Nova's
resource tracker counts them; ``current_workload`` counts the VMs there
with a task in progress. ``hypervisor_version`` and ``cpu_info`` are what
the host's driver reports (0 and "{}" until it has); ``host_ip`` is not
known (null)."""
from flask import current_app, jsonify

from common import exception
from common.db import api as db_api
from common.db import hosts as db_hosts
from nova_api import auth
from nova_api.openstack.compute import resource, services

bp = resource.blueprint("compute_hypervisors", __name__)
DEFAULT_TYPE = "QEMU"


def _db():
    return current_app.extensions["mininova"]["db"]


def _nodes():
    """[(service, node)] of the compute hosts, by host name."""
    with _db().transaction() as s:
        return sorted(db_api.compute_hosts(s), key=lambda row: row[1].host)


def summary(svc, node, liveness):
    return {"id": svc.id, "hypervisor_hostname": node.host, "state": liveness.state(svc),
            "status": services.status(svc)}


def detail(svc, node, liveness, counts):
    running, working = counts.get(node.host, (0, 0))
    free_disk = node.local_gb - node.local_gb_used
    return dict(
        summary(svc, node, liveness),
        hypervisor_type=node.hypervisor_type or DEFAULT_TYPE,
        hypervisor_version=node.hypervisor_version or 0, host_ip=None,
        cpu_info=node.cpu_info or "{}", vcpus=node.vcpus, vcpus_used=node.vcpus_used,
        memory_mb=node.memory_mb, memory_mb_used=node.memory_mb_used,
        free_ram_mb=node.memory_mb - node.memory_mb_used, local_gb=node.local_gb,
        local_gb_used=node.local_gb_used, free_disk_gb=free_disk,
        disk_available_least=free_disk, running_vms=running, current_workload=working,
        service={"host": svc.host, "id": svc.id, "disabled_reason": svc.disabled_reason})


def _vm_counts():
    with _db().transaction() as s:
        return db_hosts.vm_counts_by_host(s)


def _by_id(hypervisor_id):
    """(service, node) of the hypervisor with that id; 404 for anything
    else, non-integers included (as Nova below 2.53)."""
    for svc, node in _nodes():
        if str(svc.id) == hypervisor_id:
            return svc, node
    raise exception.NotFound("Hypervisor with ID %s could not be found." % hypervisor_id[:64])


def _matching(pattern):
    """The hypervisors whose host name contains ``pattern``; 404 if none."""
    rows = [(svc, node) for svc, node in _nodes() if pattern in node.host]
    if not rows:
        raise exception.NotFound("No hypervisor matching %s could be found." % pattern[:255])
    return rows


@bp.get("/os-hypervisors")
@auth.admin_only
def index():
    liveness = services.Liveness()
    return jsonify({"hypervisors": [summary(svc, node, liveness) for svc, node in _nodes()]})


@bp.get("/os-hypervisors/detail")
@auth.admin_only
def index_detail():
    liveness, counts = services.Liveness(), _vm_counts()
    return jsonify({"hypervisors": [detail(svc, node, liveness, counts)
                                    for svc, node in _nodes()]})


@bp.get("/os-hypervisors/statistics")
@auth.admin_only
def statistics():
    liveness, counts = services.Liveness(), _vm_counts()
    rows = [detail(svc, node, liveness, counts) for svc, node in _nodes()]
    keys = ("vcpus", "vcpus_used", "memory_mb", "memory_mb_used", "free_ram_mb", "local_gb",
            "local_gb_used", "free_disk_gb", "disk_available_least", "running_vms",
            "current_workload")
    return jsonify({"hypervisor_statistics": dict(
        {key: sum(row[key] for row in rows) for key in keys}, count=len(rows))})


@bp.get("/os-hypervisors/<hypervisor_id>")
@auth.admin_only
def show(hypervisor_id):
    svc, node = _by_id(hypervisor_id)
    return jsonify({"hypervisor": detail(svc, node, services.Liveness(), _vm_counts())})


@bp.get("/os-hypervisors/<hypervisor_id>/uptime")
@auth.admin_only
def uptime(hypervisor_id):
    """Nova asks the host for ``uptime``'s output; mininova says how long
    ago the host last reported, from what the database knows."""
    svc, node = _by_id(hypervisor_id)
    liveness = services.Liveness()
    if svc.last_heartbeat is None:
        text = "no report from this host yet"
    else:
        ago = (liveness.now - svc.last_heartbeat).total_seconds()
        text = "last report %d s ago, at %s" % (max(0, ago), svc.last_heartbeat.isoformat(
            timespec="seconds"))
    return jsonify({"hypervisor": dict(summary(svc, node, liveness), uptime=text)})


@bp.get("/os-hypervisors/<pattern>/search")
@auth.admin_only
def search(pattern):
    liveness = services.Liveness()
    return jsonify({"hypervisors": [summary(svc, node, liveness)
                                    for svc, node in _matching(pattern)]})


@bp.get("/os-hypervisors/<pattern>/servers")
@auth.admin_only
def servers(pattern):
    """The matching hypervisors, each with ``servers`` ({uuid, name}) when
    it has any (Nova leaves the key out otherwise)."""
    liveness, answer = services.Liveness(), []
    rows = _matching(pattern)
    with _db().transaction() as s:
        for svc, node in rows:
            item = summary(svc, node, liveness)
            vms = db_hosts.live_instances_on(s, node.host)
            if vms:
                item["servers"] = [{"uuid": vm_id, "name": name} for vm_id, name, _ in vms]
            answer.append(item)
    return jsonify({"hypervisors": answer})
