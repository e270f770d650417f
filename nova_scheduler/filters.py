"""Host filters and the weigher. Each filter says why it removed a host, so a
"no valid host" fault explains itself filter by filter."""
import datetime

from common.db.models import utcnow


class HostState:
    """What the scheduler knows of one compute host, read from the DB."""

    def __init__(self, service, node):
        self.host = node.host
        self.disabled = service.disabled
        self.disabled_reason = service.disabled_reason
        self.last_heartbeat = service.last_heartbeat
        self.vcpus, self.vcpus_used = node.vcpus, node.vcpus_used
        self.memory_mb, self.memory_mb_used = node.memory_mb, node.memory_mb_used
        self.local_gb, self.local_gb_used = node.local_gb, node.local_gb_used

    def free(self, total, used, ratio):
        return int(total * ratio) - used


class RequestSpec:
    def __init__(self, instance_id, vcpus, memory_mb, root_gb):
        self.instance_id = instance_id
        self.vcpus, self.memory_mb, self.root_gb = vcpus, memory_mb, root_gb


class ComputeFilter:
    """Service up (recent heartbeat) and enabled."""

    def __init__(self, conf):
        self.down_after = datetime.timedelta(seconds=conf.scheduler.service_down_time)

    def host_passes(self, host, spec):
        if host.disabled:
            return False, "disabled"
        if host.last_heartbeat is None or utcnow() - host.last_heartbeat > self.down_after:
            return False, "down"
        return True, None


class _ResourceFilter:
    unit = ""
    ratio_opt = ""
    fields = ("", "", "")  # total, used, requested

    def __init__(self, conf):
        self.ratio = getattr(conf.scheduler, self.ratio_opt)

    def host_passes(self, host, spec):
        total, used, need = self.fields
        free = host.free(getattr(host, total), getattr(host, used), self.ratio)
        needed = getattr(spec, need)
        if needed > free:
            return False, free
        return True, None

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


FILTERS = (ComputeFilter, RamFilter, CoreFilter, DiskFilter)


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
                reasons = sorted({why for _, why in removed})
                detail = ", ".join(reasons)
            notes.append("%s removed %d (%s)" % (cls.__name__, len(removed), detail))
        remaining = [h for h, _ in kept]
        if not remaining:
            break
    explanation = "%d hosts: %s" % (len(hosts), "; ".join(notes) if notes else "none removed")
    return remaining, explanation


def weigh_hosts(conf, hosts):
    """Spread: most free RAM first (ties by host name, for determinism)."""
    ratio = conf.scheduler.ram_allocation_ratio
    return sorted(hosts, key=lambda h: (-h.free(h.memory_mb, h.memory_mb_used, ratio), h.host))
