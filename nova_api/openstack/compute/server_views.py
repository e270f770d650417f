"""Servers at 2.1, exactly tempest's v2_1 schemas (``additionalProperties:
false``: nothing of a later microversion such as ``locked`` or ``tags``):

- ``summary``: a list item, ``{id, name, links}``;
- ``detail``: GET /servers/{id} and /servers/detail; ``OS-EXT-SRV-ATTR:*``
  only for admins, ``fault`` only in ERROR (and DELETED), ``progress`` only
  in the statuses where Nova shows it, ``addresses`` empty while building;
- ``basic``: PUT /servers/{id} and rebuild below 2.75 (Nova's servers.py
  ``_view_builder.show(..., extend_address=False, show_AZ=False, ...)``):
  the detail without the extension keys.

Nova's status comes from vm_state with a few task overrides
(nova/api/openstack/common.py ``_STATE_MAP``); unlike /v1 there is no
DELETING: while a delete runs the status stays what vm_state says."""
import hashlib

from common import states
from nova_api.openstack.compute import views

_STATUS_BY_VM_STATE = {
    states.BUILDING: "BUILD", states.ACTIVE: "ACTIVE", states.STOPPED: "SHUTOFF",
    states.PAUSED: "PAUSED", states.SUSPENDED: "SUSPENDED", states.ERROR: "ERROR",
    states.DELETED: "DELETED", states.RESIZED: "VERIFY_RESIZE",
}
# A resize or cold migration in progress shows RESIZE (from ACTIVE or SHUTOFF),
# its revert REVERT_RESIZE (from VERIFY_RESIZE), as Nova's _STATE_MAP.
_RESIZE_TASKS = (states.RESIZE_PREP, states.RESIZE_MIGRATING, states.RESIZE_FINISH)
_ACTIVE_TASK_STATUS = {states.REBOOTING: "REBOOT", states.REBOOTING_HARD: "HARD_REBOOT"}
_PROGRESS_STATUSES = ("ACTIVE", "BUILD", "REBUILD", "RESIZE", "VERIFY_RESIZE", "MIGRATING")
_FAULT_STATUSES = ("ERROR", "DELETED")

# nova/compute/power_state.py: the API shows the integers.
POWER_STATE_CODES = {states.NOSTATE: 0, states.RUNNING: 1, states.PAUSED_POWER: 3,
                     states.SHUTDOWN: 4, states.CRASHED: 6, states.SUSPENDED_POWER: 7}

# The libvirt domain's name (nova_compute/virt/libvirt/base.py domain_name),
# which Nova shows as the instance name.
DOMAIN_NAME_PREFIX = "mininova-"


def status(vm_state, task_state):
    if vm_state == states.BUILDING:
        return "BUILD"
    if task_state == states.REBUILDING and vm_state in (states.ACTIVE, states.STOPPED,
                                                        states.ERROR):
        return "REBUILD"
    if task_state in _RESIZE_TASKS and vm_state in (states.ACTIVE, states.STOPPED):
        return "RESIZE"
    if task_state == states.RESIZE_REVERTING and vm_state == states.RESIZED:
        return "REVERT_RESIZE"
    if vm_state == states.ACTIVE and task_state in _ACTIVE_TASK_STATUS:
        return _ACTIVE_TASK_STATUS[task_state]
    return _STATUS_BY_VM_STATE.get(vm_state, "UNKNOWN")


def host_id(project_id, host):
    """Nova's ``hostId`` (nova/utils.py generate_hostid): the same for two
    VMs of one project on one host, and telling nothing of the host."""
    if not host:
        return ""
    return hashlib.sha224((project_id + host).encode("utf-8")).hexdigest()


def summary(inst):
    return {"id": inst.id, "name": inst.name, "links": views.links("servers", inst.id)}


def addresses(inst, network_name, extended=True):
    """``{network: [address]}`` of a VM ({} while building); ``extended``:
    with the ``OS-EXT-IPS*`` keys of the detail view."""
    if inst.vm_state == states.BUILDING or not inst.ip_address or not network_name:
        return {}
    address = {"version": 6 if ":" in inst.ip_address else 4, "addr": inst.ip_address}
    if extended:
        address["OS-EXT-IPS:type"] = "fixed"
        if inst.mac_address:
            address["OS-EXT-IPS-MAC:mac_addr"] = inst.mac_address
    return {network_name: [address]}


class ServerViews:
    """Views of VM rows for one request. ``network_name``: the one network
    (``[compute] network_name``); ``metadata``: {instance id: {key: value}}.
    A VM's flavor shows its id even once the flavor is deleted: the VM keeps
    its sizes, as Nova's instance keeps its embedded flavor (a revert to a
    deleted flavor shows it again)."""

    def __init__(self, network_name, is_admin, metadata=None):
        self.network_name = network_name
        self.is_admin = is_admin
        self.metadata = metadata or {}

    def basic(self, inst):
        server_status = status(inst.vm_state, inst.task_state)
        body = {
            "id": inst.id,
            "name": inst.name,
            "status": server_status,
            "tenant_id": inst.project_id,
            "user_id": inst.user_id or "",
            "metadata": self.metadata.get(inst.id, {}),
            "hostId": host_id(inst.project_id, inst.host),
            "image": {"id": inst.image_id, "links": views.bookmark("images", inst.image_id)},
            "flavor": ({"id": inst.flavor_id, "links": views.bookmark("flavors",
                                                                      inst.flavor_id)}
                       if inst.flavor_id else {}),
            "created": views.isotime(inst.created_at),
            "updated": views.isotime(inst.updated_at),
            "addresses": addresses(inst, self.network_name, extended=False),
            "accessIPv4": inst.access_ipv4 or "",
            "accessIPv6": inst.access_ipv6 or "",
            "links": views.links("servers", inst.id),
            "OS-DCF:diskConfig": inst.disk_config or "MANUAL",
        }
        if server_status in _PROGRESS_STATUSES:
            body["progress"] = 0
        if server_status in _FAULT_STATUSES and inst.fault:
            body["fault"] = {"code": 500, "created": views.isotime(inst.updated_at),
                             "message": inst.fault}
        return body

    def detail(self, inst):
        body = self.basic(inst)
        body["addresses"] = addresses(inst, self.network_name)
        body.update({
            "key_name": inst.key_name,
            "security_groups": [{"name": "default"}],
            "OS-SRV-USG:launched_at": views.naive_isotime(inst.launched_at),
            "OS-SRV-USG:terminated_at": views.naive_isotime(inst.deleted_at),
            "OS-EXT-AZ:availability_zone": "nova",
            "OS-EXT-STS:vm_state": inst.vm_state,
            "OS-EXT-STS:task_state": inst.task_state,
            "OS-EXT-STS:power_state": POWER_STATE_CODES.get(inst.power_state, 0),
            "os-extended-volumes:volumes_attached": [],
            # Every VM gets a config drive (as Nova with force_config_drive).
            "config_drive": "True",
        })
        if self.is_admin:
            body.update({
                "OS-EXT-SRV-ATTR:host": inst.host,
                "OS-EXT-SRV-ATTR:hypervisor_hostname": inst.host,
                "OS-EXT-SRV-ATTR:instance_name": DOMAIN_NAME_PREFIX + inst.id,
            })
        return body
