"""The OpenStack API surfaces mininova serves beside /v1, by path prefix:
how each answers errors and which request-id headers it sends.

Every response of a surface, errors included, carries the request's id
(``req-<uuid>``, the one in the logs and in the VM's instance actions) as
``x-openstack-request-id``; compute's also as ``x-compute-request-id``
(tempest reads both, §2.2 of the spec)."""
import dataclasses
from typing import Callable

from nova_api.openstack import faults


@dataclasses.dataclass(frozen=True)
class Surface:
    name: str
    prefix: str                              # "/identity": the path and below it
    render_error: Callable                   # (code, message) -> Response
    request_id_headers: tuple = ("x-openstack-request-id",)

    def owns(self, path):
        return path == self.prefix or path.startswith(self.prefix + "/")


IDENTITY = Surface("identity", "/identity", faults.keystone_error)
COMPUTE = Surface("compute", "/compute", faults.nova_fault,
                  ("x-openstack-request-id", "x-compute-request-id"))
IMAGE = Surface("image", "/image", faults.keystone_error)
SURFACES = (IDENTITY, COMPUTE, IMAGE)


def of(path):
    """The surface ``path`` belongs to, or None (the native API)."""
    for surface in SURFACES:
        if surface.owns(path):
            return surface
    return None
