"""The caller's live server named in a v2.1 URL: by id only (a name is a
404, as in Nova: clients resolve names themselves, and a name that looks
up a server would make duplicates resolve silently)."""
from flask import current_app, g

from common import exception

# What a 404 repeats of an unknown id: enough to recognise it, never a 10 kB path.
_SHOWN = 64


def vm_service():
    return current_app.extensions["mininova"]["vm_service"]


def server(server_id):
    """The row of the caller's live VM with id ``server_id``;
    InstanceNotFound (404) for a name, another project's VM or none."""
    try:
        inst = vm_service().get(g.context, server_id)
    except exception.InstanceNotFound:
        inst = None
    # VMService.get also finds a VM by name: only the id counts here.
    if inst is None or inst.id != server_id:
        raise exception.InstanceNotFound(instance=server_id[:_SHOWN])
    return inst
