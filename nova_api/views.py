"""JSON shapes of API resources."""
from common import states


def isotime(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ") if dt else None


def vm(inst, images=None, flavors=None):
    image = images.get(inst.image_id) if images else None
    flavor = flavors.get(inst.flavor_id) if flavors else None
    body = {
        "id": inst.id,
        "name": inst.name,
        "status": states.status(inst.vm_state, inst.task_state),
        "vm_state": inst.vm_state,
        "task_state": inst.task_state,
        "power_state": inst.power_state,
        "host": inst.host,
        "project_id": inst.project_id,
        "server_group": inst.group_id,
        "image": {"id": inst.image_id, "name": image.name if image else None},
        "flavor": {"id": inst.flavor_id, "name": flavor.name if flavor else None,
                   "vcpus": inst.vcpus, "ram": inst.memory_mb, "disk": inst.root_gb},
        "created_at": isotime(inst.created_at),
        "updated_at": isotime(inst.updated_at),
        "launched_at": isotime(inst.launched_at),
        "addresses": [{"mac": inst.mac_address, "ip": inst.ip_address}]
        if inst.mac_address else [],
        "fault": {"message": inst.fault} if inst.fault else None,
    }
    return body


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
