"""The live server named in a v2.1 URL, by id only (a name is a 404, as in
Nova: clients resolve names themselves), as ``servers.show`` finds it: a
member's own project's, any project's for an admin."""
from flask import current_app, g

from common import context, exception
from common.db import servers as db_servers

# What a 404 repeats of an unknown id: enough to recognise it, never a 10 kB path.
_SHOWN = 64


def vm_service():
    return current_app.extensions["mininova"]["vm_service"]


def vm_metadata():
    return current_app.extensions["mininova"]["vm_metadata"]


def live_migrations():
    return current_app.extensions["mininova"]["live_migrations"]


def db():
    return current_app.extensions["mininova"]["db"]


def scope():
    """The project whose servers the caller may address; None: all (admins)."""
    return None if g.context.is_admin else g.context.project_id


def server(server_id):
    """The row of the live VM ``server_id`` the caller may address;
    InstanceNotFound (404) for a name, another project's VM (to a member) or
    none."""
    try:
        with db().transaction() as s:
            return db_servers.get(s, server_id, scope())
    except exception.InstanceNotFound:
        raise exception.InstanceNotFound(instance=server_id[:_SHOWN]) from None


def acting_context(inst):
    """The context VMService acts on ``inst`` in: the caller's, in the VM's
    project (VMService finds VMs in its context's project, and an admin may
    act on any project's)."""
    ctxt = g.context
    if inst.project_id == ctxt.project_id:
        return ctxt
    return context.RequestContext(request_id=ctxt.request_id, project_id=inst.project_id,
                                  user_id=ctxt.user_id, roles=ctxt.roles,
                                  is_admin=ctxt.is_admin)


def server_in(s, server_id):
    """``server`` in the open session ``s`` (its row usable while ``s`` is)."""
    return db_servers.get(s, server_id, scope())
