"""DB rows as the plain JSON-able dicts that RPC messages carry."""

# What the conductor's instance_get adds for one VM, read by the compute's
# build for the config drive (common/db/instance_metadata.py guest_data).
GUEST_FIELDS = ("metadata", "key_name", "key_data", "user_data")


def instance(inst):
    return {
        "id": inst.id, "name": inst.name, "project_id": inst.project_id,
        "image_id": inst.image_id, "flavor_id": inst.flavor_id, "vcpus": inst.vcpus,
        "memory_mb": inst.memory_mb, "root_gb": inst.root_gb, "host": inst.host,
        "vm_state": inst.vm_state, "task_state": inst.task_state,
        "power_state": inst.power_state, "mac_address": inst.mac_address,
        "ip_address": inst.ip_address,
    }


def image(img):
    # No location: compute hosts fetch images over HTTP, not from the API's disk.
    return {"id": img.id, "name": img.name,
            "checksum": img.checksum, "size": img.size, "disk_format": img.disk_format}
