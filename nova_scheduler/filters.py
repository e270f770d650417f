"""Host filters and weighers. Each filter says why it removed a host, so a
"no valid host" fault explains itself filter by filter, e.g.
``3 hosts: ComputeFilter removed 1 (down); RamFilter removed 2 (need 4096 MB,
max free 2048 MB)``."""
import dataclasses
import datetime

from common.db.allocations import Resources
from common.db.models import utcnow


@dataclasses.dataclass
class RequestSpec:
    instance_id: str
    vcpus: int
    memory_mb: int
    root_gb: int
    project_id: str | None = None          # the group's project (set with group_id)
    group_id: str | None = None
    group_policy: str | None = None
    group_hosts: frozenset = frozenset()   # hosts other members of the group are on
    tried_hosts: frozenset = frozenset()   # hosts a build of this VM already failed on
    attempts: tuple = ()                   # its earlier builds: {"host", "error"[, "interrupted"]}

    @property
    def resources(self):
        """What the VM allocates on its host."""
        return Resources(self.vcpus, self.memory_mb, self.root_gb)


class ComputeFilter:
    """Service up (recent heartbeat) and enabled."""

    def __init__(self, conf):
        # Heartbeats older than this are down (one clock read per placement).
        self.oldest_alive = utcnow() - datetime.timedelta(
            seconds=conf.scheduler.service_down_time)

    def host_passes(self, host, spec):
        if host.disabled:
            return False, "disabled"
        if host.last_heartbeat is None or host.last_heartbeat < self.oldest_alive:
            return False, "down"
        return True, None


class RetryFilter:
    """Not a host this VM's build already failed on."""

    def __init__(self, conf):
        pass

    def host_passes(self, host, spec):
        return host.host not in spec.tried_hosts, "already tried"


class _ResourceFilter:
    unit = ""
    ratio_opt = ""
    fields = ("", "", "")  # total, used, requested

    def __init__(self, conf):
        self.ratio = getattr(conf.scheduler, self.ratio_opt)

    def host_passes(self, host, spec):
        total, used, need = self.fields
        free = host.free(getattr(host, total), getattr(host, used), self.ratio)
        return getattr(spec, need) <= free, free

    def explain(self, spec, frees):
        return "need %d %s, max free %d %s" % (getattr(spec, self.fields[2]), self.unit,
                                               max(frees), self.unit)


class RamFilter(_ResourceFilter):
    unit, ratio_opt = "MB", "ram_allocation_ratio"
    fields = ("memory_mb", "memory_mb_used", "memory_mb")


class CoreFilter(_ResourceFilter):
    unit, ratio_opt = "vCPUs", "cpu_allocation_ratio"
    fields = ("vcpus", "vcpus_used", "vcpus")


class DiskFilter(_ResourceFilter):
    unit, ratio_opt = "GB", "disk_allocation_ratio"
    fields = ("local_gb", "local_gb_used", "root_gb")


class ServerGroupAntiAffinityFilter:
    """Members of an anti-affinity group never share a host."""

    def __init__(self, conf):
        pass

    def host_passes(self, host, spec):
        if spec.group_policy != "anti-affinity":
            return True, None
        return host.host not in spec.group_hosts, "has a member of group %s" % spec.group_id


class ServerGroupAffinityFilter:
    """Members of an affinity group all go where the first one went."""

    def __init__(self, conf):
        pass

    def host_passes(self, host, spec):
        if spec.group_policy != "affinity" or not spec.group_hosts:
            return True, None
        return host.host in spec.group_hosts, "not the host of group %s (%s)" % (
            spec.group_id, ", ".join(sorted(spec.group_hosts)))


FILTERS = (ComputeFilter, RetryFilter, RamFilter, CoreFilter, DiskFilter,
           ServerGroupAntiAffinityFilter, ServerGroupAffinityFilter)


def host_passes_group_policy(spec, host_name, group_hosts):
    """Re-check of the group filters at claim time, against fresh data."""
    if spec.group_policy == "anti-affinity":
        return host_name not in group_hosts
    if spec.group_policy == "affinity":
        return not group_hosts or host_name in group_hosts
    return True


def filter_hosts(conf, hosts, spec):
    """Run the filters in order. Returns (passing hosts, explanation)."""
    remaining = list(hosts)
    notes = []
    for cls in FILTERS:
        flt = cls(conf)
        kept, removed = [], []
        for host in remaining:
            ok, why = flt.host_passes(host, spec)
            (kept if ok else removed).append((host, why))
        if removed:
            if hasattr(flt, "explain"):
                detail = flt.explain(spec, [why for _, why in removed])
            else:
                detail = ", ".join(sorted({why for _, why in removed}))
            notes.append("%s removed %d (%s)" % (cls.__name__, len(removed), detail))
        remaining = [h for h, _ in kept]
        if not remaining:
            break
    explanation = "%d hosts: %s" % (len(hosts), "; ".join(notes) if notes else "none removed")
    return remaining, explanation


def weigh_hosts(conf, hosts):
    """Order hosts best first. Each weigher's raw value (free RAM, vCPUs,
    disk) is normalized to 0..1 across the candidates, times its multiplier
    from config, and summed, as in Nova: positive multipliers spread VMs over
    hosts, negative ones pack them. Ties go by host name, for determinism."""
    sch = conf.scheduler
    ram, cpu, disk = sch.ram_allocation_ratio, sch.cpu_allocation_ratio, sch.disk_allocation_ratio
    weighers = (
        (sch.ram_weight_multiplier, lambda h: h.free(h.memory_mb, h.memory_mb_used, ram)),
        (sch.cpu_weight_multiplier, lambda h: h.free(h.vcpus, h.vcpus_used, cpu)),
        (sch.disk_weight_multiplier, lambda h: h.free(h.local_gb, h.local_gb_used, disk)),
    )
    totals = {h.host: 0.0 for h in hosts}
    for multiplier, raw in weighers:
        if not multiplier or not hosts:
            continue
        values = {h.host: raw(h) for h in hosts}
        low, high = min(values.values()), max(values.values())
        for name, value in values.items():
            norm = (value - low) / (high - low) if high > low else 0.0
            totals[name] += multiplier * norm
    return sorted(hosts, key=lambda h: (-totals[h.host], h.host))
