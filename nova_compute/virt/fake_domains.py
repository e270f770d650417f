"""The fake hypervisor's records: one FakeDomain per domain, and what a
power change of one sends (the lifecycle events libvirt would send)."""
import dataclasses
import os

from common import exception, states
from nova_compute.virt import driver

GiB = 1024 ** 3
MiB = 1024 ** 2


@dataclasses.dataclass
class FakeDomain:
    spec: driver.InstanceSpec
    owner: str                   # the host its metadata names
    power_state: str = states.SHUTDOWN
    virtual_size: int = 0        # of its root disk, bytes
    actual_size: int = 0
    generation: int = 1          # of its disk: a rebuild makes a new one
    incoming: bool = False       # arriving by live migration, not yet persistent
    leaving: bool = False        # its disk set aside for a cold migration
    console: list = dataclasses.field(default_factory=list)


def set_power(dom, power_state, events):
    """Set ``dom``'s power state; append to ``events`` the (instance id,
    event) libvirt would send for that change, nothing when it is no change."""
    if dom.power_state == power_state:
        return
    before, dom.power_state = dom.power_state, power_state
    if power_state == states.RUNNING:
        events.append((dom.spec.id, "resumed" if before == states.PAUSED_POWER else "started"))
    elif power_state == states.PAUSED_POWER:
        events.append((dom.spec.id, "suspended"))   # libvirt's name for a pause
    elif power_state == states.CRASHED:
        events.append((dom.spec.id, "crashed"))
    else:
        events.append((dom.spec.id, "stopped"))


def base_size(instance, base_image_path):
    """The size of the base image file a domain's disk would start from."""
    if not os.path.isabs(base_image_path):
        raise exception.Invalid(reason="base image path must be absolute, not %r"
                                % base_image_path)
    try:
        return os.path.getsize(base_image_path)
    except OSError:
        raise exception.ImageUnavailable(image=instance.image_id,
                                         reason="no base file %s" % base_image_path)
