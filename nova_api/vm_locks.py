"""A VM's lock as every API service checks it: non-admins can neither act
on a locked VM, change its metadata nor delete it; admins can (as in Nova)."""
from common import exception


def guard(ctxt):
    """Conditions of a guarded UPDATE (db_api.instance_update_if): the VM
    unlocked, unless the caller is an admin."""
    return {} if ctxt.is_admin else {"expected_locked": False}


def refuse_if_locked(ctxt, inst, what):
    """InstanceLocked (409) for a non-admin on a locked VM."""
    if inst.locked and not ctxt.is_admin:
        raise exception.InstanceLocked(instance=inst.name, action=what)
