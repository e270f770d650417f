"""Gauges read from the database when Prometheus scrapes the scheduler:
heartbeat age and liveness of every service, VMs by status, each compute
host's capacity and usage. Three small queries per scrape, nothing kept in
between, so the numbers are as true as the services table; every scheduler
exports the same (take max() or any one)."""
import logging

import sqlalchemy as sa
from prometheus_client.core import GaugeMetricFamily

from common import states
from common.db.models import ComputeNode, Instance, Service, utcnow

LOG = logging.getLogger(__name__)

# Nova's statuses, always exported (at 0 when no VM has them) so alerts on
# e.g. ERROR have a series to look at.
STATUSES = ("BUILD", "ACTIVE", "SHUTOFF", "PAUSED", "SUSPENDED", "REBOOT", "HARD_REBOOT",
            "ERROR", "DELETING")
MB, GB = 1024 ** 2, 1024 ** 3


def _families():
    return {
        "age": GaugeMetricFamily(
            "mininova_service_heartbeat_age_seconds",
            "Seconds since the service's last heartbeat, at scrape time.",
            labels=["host", "binary"]),
        "up": GaugeMetricFamily(
            "mininova_service_up",
            "1 if the service's last heartbeat is within [scheduler] service_down_time.",
            labels=["host", "binary"]),
        "disabled": GaugeMetricFamily(
            "mininova_service_disabled", "1 if an operator disabled the service.",
            labels=["host", "binary"]),
        "vms": GaugeMetricFamily("mininova_vms", "Live (not deleted) VMs by status.",
                                 labels=["status"]),
        "vcpus": GaugeMetricFamily("mininova_host_vcpus", "Physical vCPUs of a compute host.",
                                   labels=["host"]),
        "vcpus_used": GaugeMetricFamily("mininova_host_vcpus_used",
                                        "vCPUs allocated on a compute host (VMs and moves).",
                                        labels=["host"]),
        "memory": GaugeMetricFamily("mininova_host_memory_bytes",
                                    "RAM a compute host offers to VMs.", labels=["host"]),
        "memory_used": GaugeMetricFamily("mininova_host_memory_used_bytes",
                                         "RAM allocated on a compute host (VMs and moves).",
                                         labels=["host"]),
        "disk": GaugeMetricFamily("mininova_host_disk_bytes",
                                  "Disk a compute host offers to VMs.", labels=["host"]),
        "disk_used": GaugeMetricFamily("mininova_host_disk_used_bytes",
                                       "Disk allocated on a compute host (VMs and moves).",
                                       labels=["host"]),
        "db_up": GaugeMetricFamily("mininova_database_up",
                                   "1 if the scheduler could read the database for this "
                                   "scrape (0: the gauges above are missing)."),
    }


class DatabaseCollector:
    """A prometheus_client collector: ``REGISTRY.register(DatabaseCollector(...))``."""

    def __init__(self, db, service_down_time):
        self.db = db
        self.service_down_time = service_down_time

    def describe(self):
        # Without this the registry would call collect(), i.e. the database,
        # when the collector is registered.
        return list(_families().values())

    def collect(self):
        fams = _families()
        try:
            with self.db.transaction() as s:
                services = s.execute(sa.select(Service.host, Service.binary,
                                               Service.last_heartbeat, Service.disabled)).all()
                vm_rows = s.execute(
                    sa.select(Instance.vm_state, Instance.task_state, sa.func.count())
                    .where(Instance.deleted_at.is_(None))
                    .group_by(Instance.vm_state, Instance.task_state)).all()
                nodes = s.scalars(sa.select(ComputeNode)).all()
                nodes = [(n.host, n.vcpus, n.vcpus_used, n.memory_mb, n.memory_mb_used,
                          n.local_gb, n.local_gb_used) for n in nodes]
        except Exception as e:  # a scrape during a DB outage says so instead of failing
            LOG.warning("metrics: cannot read the database: %s", e)
            fams["db_up"].add_metric([], 0)
            yield fams["db_up"]
            return
        now = utcnow()
        for host, binary, last_heartbeat, disabled in services:
            labels = [host, binary]
            if last_heartbeat is not None:
                age = max(0.0, (now - last_heartbeat).total_seconds())
                fams["age"].add_metric(labels, age)
                fams["up"].add_metric(labels, 1 if age <= self.service_down_time else 0)
            else:
                fams["up"].add_metric(labels, 0)
            fams["disabled"].add_metric(labels, 1 if disabled else 0)
        counts = dict.fromkeys(STATUSES, 0)
        for vm_state, task_state, count in vm_rows:
            status = states.status(vm_state, task_state)
            counts[status] = counts.get(status, 0) + count
        for status, count in counts.items():
            fams["vms"].add_metric([status], count)
        for host, vcpus, vcpus_used, memory_mb, memory_mb_used, local_gb, local_gb_used in nodes:
            fams["vcpus"].add_metric([host], vcpus)
            fams["vcpus_used"].add_metric([host], vcpus_used)
            fams["memory"].add_metric([host], memory_mb * MB)
            fams["memory_used"].add_metric([host], memory_mb_used * MB)
            fams["disk"].add_metric([host], local_gb * GB)
            fams["disk_used"].add_metric([host], local_gb_used * GB)
        fams["db_up"].add_metric([], 1)
        yield from fams.values()
