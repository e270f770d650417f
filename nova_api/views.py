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
        "image": {"id": inst.image_id, "name": image.name if image else None},
        "flavor": {"id": inst.flavor_id, "name": flavor.name if flavor else None,
                   "vcpus": inst.vcpus, "ram": inst.memory_mb, "disk": inst.root_gb},
        "created_at": isotime(inst.created_at),
        "updated_at": isotime(inst.updated_at),
        "launched_at": isotime(inst.launched_at),
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
