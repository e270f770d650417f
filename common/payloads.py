"""DB rows as the plain JSON-able dicts that RPC messages carry."""


def instance(inst):
    return {
        "id": inst.id, "name": inst.name, "project_id": inst.project_id,
        "image_id": inst.image_id, "flavor_id": inst.flavor_id, "vcpus": inst.vcpus,
        "memory_mb": inst.memory_mb, "root_gb": inst.root_gb, "host": inst.host,
        "vm_state": inst.vm_state, "task_state": inst.task_state,
        "power_state": inst.power_state,
    }


def image(img):
    return {"id": img.id, "name": img.name, "location": img.location,
            "checksum": img.checksum, "size": img.size, "disk_format": img.disk_format}
