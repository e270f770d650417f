"""JSON shapes of API resources."""
import collections
import json

from common import states

_STATUS = states.status


def isotime(dt):
    """Naive UTC datetime -> "YYYY-MM-DDTHH:MM:SSZ" (isoformat, not strftime:
    the cheaper of the two, called several times per VM of a list)."""
    return dt.isoformat(timespec="seconds") + "Z" if dt else None


# The columns a VM's view is made of: lists select exactly these (Core rows,
# no ORM objects), and ``vm_row`` reads them by name.
VM_FIELDS = ("id", "name", "vm_state", "task_state", "power_state", "host", "project_id",
             "group_id", "image_id", "flavor_id", "vcpus", "memory_mb", "root_gb",
             "created_at", "updated_at", "launched_at", "mac_address", "ip_address", "fault")
VmRow = collections.namedtuple("VmRow", VM_FIELDS)


def vm_row(row, image_names, flavor_names):
    """A VM from anything with the VM_FIELDS as attributes (a row of
    ``db_api.instance_page``, a VmRow, an ORM object); ``*_names``:
    {id: name} maps."""
    mac = row.mac_address
    return {
        "id": row.id,
        "name": row.name,
        "status": _STATUS(row.vm_state, row.task_state),
        "vm_state": row.vm_state,
        "task_state": row.task_state,
        "power_state": row.power_state,
        "host": row.host,
        "project_id": row.project_id,
        "server_group": row.group_id,
        "image": {"id": row.image_id, "name": image_names.get(row.image_id)},
        "flavor": {"id": row.flavor_id, "name": flavor_names.get(row.flavor_id),
                   "vcpus": row.vcpus, "ram": row.memory_mb, "disk": row.root_gb},
        "created_at": isotime(row.created_at),
        "updated_at": isotime(row.updated_at),
        "launched_at": isotime(row.launched_at),
        "addresses": [{"mac": mac, "ip": row.ip_address}] if mac else [],
        "fault": {"message": row.fault} if row.fault else None,
    }


def vm(inst, image_names, flavor_names):
    """A VM from an ORM object or a dict of its fields (as
    ``db_api.instance_insert`` returns)."""
    if isinstance(inst, dict):
        inst = VmRow._make(inst[f] for f in VM_FIELDS)
    return vm_row(inst, image_names, flavor_names)


# One encoder, compact, without the circular-reference bookkeeping (views
# are trees).
ENCODER = json.JSONEncoder(separators=(",", ":"), check_circular=False)


class VmListEncoder:
    """JSON of a list of VMs from their rows, remembering the encoded text of
    each VM by its id together with everything the text is made of (the
    row's values and the image and flavor names): a VM that did not change
    since the last list costs a dictionary lookup instead of building and
    encoding its view (the bulk of a long list's work). Exact by
    construction: an entry is used only when all it was made of is equal,
    so nothing ever needs invalidating. One entry per VM id (a VM that
    changed replaces its own entry), so the memo holds at most as many
    entries as there are VMs listed, never stale copies of the same VM;
    ``max_entries`` bounds it for clouds with more VMs (the memo is emptied
    when a new id would exceed it; an entry is about 1.5 KB). Safe to share
    between threads."""

    def __init__(self, max_entries=5000):
        self.max_entries = max_entries
        self._texts = {}

    def chunks(self, rows, image_names, flavor_names):
        """The list's JSON as UTF-8 pieces: "[", each VM's text with the
        commas between them, "]"; joined once by the caller (a long list is
        about 0.6 MB for 1000 VMs: every intermediate copy is as much again)."""
        texts = self._texts
        out = [b"["]
        for row in rows:
            key = (tuple(row), image_names.get(row.image_id), flavor_names.get(row.flavor_id))
            entry = texts.get(row.id)
            if entry is None or entry[0] != key:
                entry = (key, ENCODER.encode(vm_row(row, image_names, flavor_names)).encode())
                if len(texts) >= self.max_entries and row.id not in texts:
                    texts.clear()
                texts[row.id] = entry
            out.append(entry[1])
            out.append(b",")
        if len(out) == 1:
            out.append(b"]")
        else:
            out[-1] = b"]"  # in place of the last comma
        return out

    def encode(self, rows, image_names, flavor_names):
        return b"".join(self.chunks(rows, image_names, flavor_names)).decode()


def flavor(f):
    return {"id": f.id, "name": f.name, "vcpus": f.vcpus, "ram": f.memory_mb, "disk": f.root_gb}


def image(i):
    return {"id": i.id, "name": i.name, "disk_format": i.disk_format, "size": i.size,
            "checksum": i.checksum, "min_ram": i.min_ram, "min_disk": i.min_disk,
            "status": i.status, "created_at": isotime(i.created_at)}


def service(svc, now, down_after):
    up = svc.last_heartbeat is not None and now - svc.last_heartbeat <= down_after
    return {"id": svc.id, "binary": svc.binary, "host": svc.host,
            "status": "disabled" if svc.disabled else "enabled",
            "state": "up" if up else "down",
            "last_heartbeat": isotime(svc.last_heartbeat),
            "disabled_reason": svc.disabled_reason}


def duration_ms(start, finish):
    """Milliseconds from start to finish; None while still running."""
    if start is None or finish is None:
        return None
    return int(round((finish - start).total_seconds() * 1000))


def instance_action(a):
    return {"instance_id": a.instance_id, "request_id": a.request_id, "action": a.action,
            "start_time": isotime(a.start_time), "finish_time": isotime(a.finish_time),
            "result": a.result, "message": a.message,
            "user_id": a.user_id, "project_id": a.project_id}


def instance_action_event(e):
    return {"event": e.event, "host": e.host,
            "start_time": isotime(e.start_time), "finish_time": isotime(e.finish_time),
            "duration_ms": duration_ms(e.start_time, e.finish_time),
            "result": e.result, "details": e.details}


def instance_action_detail(a, events):
    body = instance_action(a)
    body["duration_ms"] = duration_ms(a.start_time, a.finish_time)
    body["events"] = [instance_action_event(e) for e in events]
    return body


def host(svc, node, conf, now, down_after, vms):
    sch = conf.scheduler

    def resource(total, used, ratio):
        capacity = int(total * ratio)
        return {"total": total, "allocation_ratio": ratio, "capacity": capacity,
                "used": used, "free": capacity - used}
    state = service(svc, now, down_after)
    return {
        "name": node.host, "state": state["state"], "status": state["status"],
        "hypervisor_type": node.hypervisor_type,
        "vcpus": resource(node.vcpus, node.vcpus_used, sch.cpu_allocation_ratio),
        "memory_mb": resource(node.memory_mb, node.memory_mb_used, sch.ram_allocation_ratio),
        "disk_gb": resource(node.local_gb, node.local_gb_used, sch.disk_allocation_ratio),
        "vms": vms,
    }


def server_group(group, members):
    return {"id": group.id, "name": group.name, "policy": group.policy,
            "project_id": group.project_id, "created_at": isotime(group.created_at),
            "members": [m.id for m in members]}
