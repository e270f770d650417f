"""Services, compute hosts and server groups: what the scheduler places on."""
import uuid

import sqlalchemy as sa

from common import exception
from common.db.models import ComputeNode, Instance, ServerGroup, Service, utcnow

POLICIES = ("affinity", "anti-affinity")


# The scheduler's snapshot of every host, read often: prebuilt, rows by name.
_HOST_ROWS = (sa.select(Service.host, Service.disabled, Service.disabled_reason,
                        Service.last_heartbeat, ComputeNode.vcpus, ComputeNode.vcpus_used,
                        ComputeNode.memory_mb, ComputeNode.memory_mb_used,
                        ComputeNode.local_gb, ComputeNode.local_gb_used,
                        ComputeNode.generation)
              .join_from(Service.__table__, ComputeNode.__table__,
                         ComputeNode.host == Service.host)
              .where(Service.binary == "mininova-compute"))


def host_rows(s):
    """One read-only row (host, disabled, disabled_reason, last_heartbeat,
    vcpus, vcpus_used, memory_mb, memory_mb_used, local_gb, local_gb_used,
    generation) per compute service that reported capacity."""
    return s.execute(_HOST_ROWS).all()


def service_get(s, service_id):
    svc = s.get(Service, service_id)
    if svc is None:
        raise exception.ServiceNotFound(service=service_id)
    return svc


def service_set_disabled(s, service_id, disabled, reason=None):
    svc = service_get(s, service_id)
    svc.disabled = disabled
    svc.disabled_reason = reason if disabled else None
    s.flush()
    return svc


def service_get_by_host_binary(s, host, binary):
    svc = s.scalars(sa.select(Service).where(Service.host == host,
                                             Service.binary == binary)).first()
    if svc is None:
        raise exception.ServiceNotFound(service="%s on %s" % (binary, host))
    return svc


def host_get(s, host):
    """(service, node) of a compute host."""
    row = s.execute(sa.select(Service, ComputeNode)
                    .join(ComputeNode, ComputeNode.host == Service.host)
                    .where(Service.binary == "mininova-compute", Service.host == host)).first()
    if row is None:
        raise exception.HostNotFound(host=host)
    return row


def instances_by_host(s):
    """{host: [(id, name, vm_state)]} of the live VMs placed on a host."""
    result = {}
    rows = s.execute(sa.select(Instance.host, Instance.id, Instance.name, Instance.vm_state)
                     .where(Instance.deleted_at.is_(None), Instance.host.is_not(None))
                     .order_by(Instance.created_at))
    for host, instance_id, name, vm_state in rows:
        result.setdefault(host, []).append({"id": instance_id, "name": name,
                                            "vm_state": vm_state})
    return result


def live_instances_on(s, host):
    """(id, name, task_state) of the live VMs placed on ``host``."""
    return s.execute(sa.select(Instance.id, Instance.name, Instance.task_state)
                     .where(Instance.deleted_at.is_(None), Instance.host == host)
                     .order_by(Instance.created_at)).all()


def vm_counts_by_host(s):
    """{host: (live VMs placed there, those of them with a task in progress)}."""
    busy = sa.func.count(Instance.task_state)
    rows = s.execute(sa.select(Instance.host, sa.func.count(), busy)
                     .where(Instance.deleted_at.is_(None), Instance.host.is_not(None))
                     .group_by(Instance.host))
    return {host: (running, working) for host, running, working in rows}


# -- server groups -------------------------------------------------------------

def group_create(s, project_id, name, policy):
    group = ServerGroup(id=str(uuid.uuid4()), name=name, policy=policy,
                        project_id=project_id, created_at=utcnow())
    s.add(group)
    s.flush()
    return group


def _live_groups(project_id):
    return sa.select(ServerGroup).where(ServerGroup.deleted_at.is_(None),
                                        ServerGroup.project_id == project_id)


def group_list(s, project_id):
    return s.scalars(_live_groups(project_id).order_by(ServerGroup.created_at)).all()


def group_get(s, project_id, ref, lock=False):
    query = _live_groups(project_id).where(
        sa.or_(ServerGroup.id == str(ref), ServerGroup.name == str(ref)))
    if lock:
        # Serializes the placement of a group's members: two schedulers
        # cannot both put anti-affine VMs on one host in a burst.
        query = query.with_for_update()
    group = s.scalars(query).first()
    if group is None:
        raise exception.ServerGroupNotFound(group=ref)
    return group


def group_get_by_id(s, group_id, project_id=None):
    """A live group by id, of ``project_id`` unless None (an admin's view):
    another project's group does not exist for its caller."""
    query = sa.select(ServerGroup).where(ServerGroup.deleted_at.is_(None),
                                         ServerGroup.id == str(group_id))
    if project_id is not None:
        query = query.where(ServerGroup.project_id == project_id)
    group = s.scalars(query).first()
    if group is None:
        raise exception.ServerGroupNotFound(group=group_id)
    return group


def group_delete_by_id(s, group_id, project_id=None):
    group_get_by_id(s, group_id, project_id).deleted_at = utcnow()


def group_list_all(s):
    return s.scalars(sa.select(ServerGroup).where(ServerGroup.deleted_at.is_(None))
                     .order_by(ServerGroup.created_at)).all()


def group_delete(s, project_id, ref):
    group_get(s, project_id, ref).deleted_at = utcnow()


def group_members(s, group_id):
    return s.scalars(sa.select(Instance).where(Instance.group_id == group_id,
                                               Instance.deleted_at.is_(None))
                     .order_by(Instance.created_at)).all()


def group_hosts(s, group_id, exclude_instance=None):
    """Hosts that live members of the group occupy (or have claimed)."""
    query = sa.select(Instance.host).where(
        Instance.group_id == group_id, Instance.deleted_at.is_(None),
        Instance.host.is_not(None))
    if exclude_instance:
        query = query.where(Instance.id != exclude_instance)
    return set(s.scalars(query).all())
