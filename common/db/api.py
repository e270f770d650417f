"""Queries and atomic state changes, each a function of an open session.

Conditional UPDATEs (``... WHERE task_state = expected``) are how concurrent
daemons agree on a VM's state without locks held across RPC: whoever's UPDATE
matches wins, the loser sees rowcount 0 and backs off.
"""
import json
import uuid

import sqlalchemy as sa
from sqlalchemy import exc

from common import exception, states
from common.db import allocations, auth, fixed_ips, images, vm_migrations
from common.db.models import ComputeNode, Flavor, Image, Instance, Migration, Service, utcnow


def is_uuid(value):
    try:
        uuid.UUID(str(value))
        return True
    except ValueError:
        return False


# -- flavors -----------------------------------------------------------------

def flavor_list(s):
    return s.scalars(sa.select(Flavor).order_by(Flavor.memory_mb, Flavor.name)).all()


def flavor_get(s, name_or_id):
    flavor = s.get(Flavor, str(name_or_id))
    if flavor is None:
        flavor = s.scalars(sa.select(Flavor).where(Flavor.name == str(name_or_id))).first()
    if flavor is None:
        raise exception.FlavorNotFound(flavor=name_or_id)
    return flavor


def flavor_create(s, name, vcpus, memory_mb, root_gb, flavor_id=None):
    flavor = Flavor(id=flavor_id or str(uuid.uuid4()), name=name, vcpus=vcpus,
                    memory_mb=memory_mb, root_gb=root_gb)
    s.add(flavor)
    try:
        s.flush()
    except exc.IntegrityError as e:
        raise exception.DuplicateName(kind="flavor", name=name) from e
    return flavor


# -- images ------------------------------------------------------------------

def image_list(s):
    return s.scalars(sa.select(Image).where(Image.deleted_at.is_(None))
                     .order_by(Image.created_at)).all()


def image_get(s, name_or_id, ctxt=None):
    """The live image with id ``name_or_id``, else the one named so; only
    among those ``ctxt`` may see (common/db/images.py) when given. Names may
    repeat: several images of that name is a 409 listing their ids."""
    query = sa.select(Image).where(Image.deleted_at.is_(None))
    if is_uuid(name_or_id):
        image = s.scalars(query.where(Image.id == str(name_or_id))).first()
        if image is not None and (ctxt is None or images.visible_to(ctxt, image)):
            return image
    named = s.scalars(query.where(Image.name == str(name_or_id))
                      .order_by(Image.created_at, Image.id)).all()
    if ctxt is not None:
        named = [i for i in named if images.visible_to(ctxt, i)]
    if not named:
        raise exception.ImageNotFound(image=name_or_id)
    if len(named) > 1:
        raise exception.Conflict(reason="%d images are named '%s' (ids %s); use an id."
                                 % (len(named), name_or_id, ", ".join(i.id for i in named)))
    return named[0]


def image_names(s):
    """{image id: name} of every image, None as the name of deleted ones
    (a VM keeps showing its image's id; the name goes with the image)."""
    rows = s.connection().execute(sa.select(Image.id, Image.name, Image.deleted_at))
    return {i: (None if deleted else name) for i, name, deleted in rows}


def image_create(s, **values):
    """An image with its data (/v1, mininova-manage): qcow2 in a bare container."""
    values.setdefault("disk_format", "qcow2")
    values.setdefault("container_format", "bare")
    image = Image(id=values.pop("id", None) or str(uuid.uuid4()), **values)
    s.add(image)
    try:
        s.flush()
    except exc.IntegrityError as e:
        raise exception.Conflict(reason="An image with id %s already exists." % image.id) from e
    return image


# -- instances ---------------------------------------------------------------

_INSERT_INSTANCE = sa.insert(Instance.__table__)  # built once


def instance_insert(s, **values):
    """Add a VM row with one INSERT (no ORM flush) and return all its values
    as a dict, defaults included: what the API shows of a new VM.
    DuplicateName (409) if a live VM of the same ``name_scope`` (by default
    its project; None: none) has its name."""
    now = utcnow()
    row = {"id": str(uuid.uuid4()), "created_at": now, "updated_at": now,
           "power_state": states.NOSTATE, "host": None, "task_state": None, "fault": None,
           "group_id": None, "sched_attempts": None, "mac_address": None, "ip_address": None,
           "launched_at": None, "deleted_at": None, "user_id": None, "key_name": None,
           "key_data": None, "user_data": None, "access_ipv4": None, "access_ipv6": None,
           "disk_config": "MANUAL", "locked": False, "locked_by": None,
           "name_scope": values.get("project_id")}
    row.update(values)
    try:
        s.connection().execute(_INSERT_INSTANCE, row)
    except exc.IntegrityError as e:
        raise exception.DuplicateName(kind="VM", name=values.get("name")) from e
    return row


def instance_create(s, **values):
    """``instance_insert``, returning the ORM object (for daemons and tests)."""
    return s.get(Instance, instance_insert(s, **values)["id"])


def _live_instances():
    return sa.select(Instance).where(Instance.deleted_at.is_(None))


def instance_get(s, instance_id):
    """A live VM by id (any project: for daemons)."""
    inst = s.scalars(_live_instances().where(Instance.id == instance_id)).first()
    if inst is None:
        raise exception.InstanceNotFound(instance=instance_id)
    return inst


# -- the VM reads and state changes of every build (prebuilt) ----------------
# They run once or twice per VM built, so they are Core statements built once
# at import with bound parameters (SQLAlchemy reuses their compiled form), and
# answer read-only rows whose columns are read by name. ``instance_get`` is
# the ORM entity, for callers that change or refresh it through the session.

_I = Instance.__table__.c
_NOW = sa.bindparam("now", type_=sa.DateTime())
_ROW_FIELDS = (_I.id, _I.name, _I.project_id, _I.user_id, _I.image_id, _I.flavor_id,
               _I.vcpus, _I.memory_mb, _I.root_gb, _I.host, _I.vm_state, _I.task_state,
               _I.power_state, _I.mac_address, _I.ip_address, _I.group_id, _I.sched_attempts,
               _I.created_at, _I.updated_at)
_ROW = (sa.select(*_ROW_FIELDS)
        .where(_I.id == sa.bindparam("instance_id"), _I.deleted_at.is_(None)))

# The VM with its move in progress, if any (one statement: the conductor
# answers this for every build and power task).
_MOVES = Migration.__table__
_WITH_MOVE = (sa.select(*_ROW_FIELDS,
                        *(c.label("migration_" + c.name) for c in vm_migrations.FIELDS))
              .outerjoin_from(Instance.__table__, _MOVES, sa.and_(
                  _MOVES.c.instance_id == _I.id, vm_migrations.IN_PROGRESS))
              .where(_I.deleted_at.is_(None)))
_ROW_WITH_MOVE = _WITH_MOVE.where(_I.id == sa.bindparam("instance_id"))
_ROWS_OF_HOST = (_WITH_MOVE.where(sa.or_(
    _I.host == sa.bindparam("host"),
    _MOVES.c.source_host == sa.bindparam("host"),
    _MOVES.c.dest_host == sa.bindparam("host")))
    .order_by(_I.created_at, _I.id))

_START_SPAWNING = (sa.update(Instance.__table__)
                   .where(_I.id == sa.bindparam("instance_id"), _I.deleted_at.is_(None),
                          _I.task_state == sa.bindparam("expected_task_state"))
                   .values(host=sa.bindparam("host"), task_state=sa.bindparam("task_state"),
                           updated_at=_NOW))

_SPAWNED = (sa.update(Instance.__table__)
            .where(_I.id == sa.bindparam("instance_id"), _I.deleted_at.is_(None),
                   _I.task_state == sa.bindparam("expected_task_state"),
                   _I.host == sa.bindparam("expected_host"))
            .values(vm_state=sa.bindparam("vm_state"), task_state=None,
                    power_state=sa.bindparam("power_state"), launched_at=_NOW, fault=None,
                    updated_at=_NOW))


def instance_row(s, instance_id):
    """A live VM as a read-only row with the fields of ``payloads.instance``
    (plus group_id, sched_attempts, created_at, updated_at, user_id); None
    if gone."""
    return s.execute(_ROW, {"instance_id": instance_id}).first()


def instance_with_move(s, instance_id):
    """``instance_row`` plus its move in progress (``migration_uuid``,
    ``migration_source_host``, ... None when it has none); None if gone."""
    return s.execute(_ROW_WITH_MOVE, {"instance_id": instance_id}).first()


def instances_of_host(s, host):
    """Rows as ``instance_with_move`` of the live VMs on ``host`` or with a
    move in progress from or to it, oldest first."""
    return s.execute(_ROWS_OF_HOST, {"host": host}).all()


def move_of(row):
    """The move in progress of an ``instance_with_move`` row as
    ``vm_migrations.as_dict`` makes it, or None."""
    if row.migration_uuid is None:
        return None
    return {"uuid": row.migration_uuid, "source_host": row.migration_source_host,
            "dest_host": row.migration_dest_host, "type": row.migration_migration_type,
            "status": row.migration_status}


def instance_start_spawning(s, instance_id, host, expected_task_state, task_state, now):
    """Give a VM still in ``expected_task_state`` its host; True if it was."""
    return s.execute(_START_SPAWNING, {
        "instance_id": instance_id, "expected_task_state": expected_task_state,
        "host": host, "task_state": task_state, "now": now}).rowcount == 1


def instance_spawned(s, instance_id, host, expected_task_state, vm_state, power_state, now):
    """A VM still in ``expected_task_state`` on ``host`` now runs; True if it was."""
    return s.execute(_SPAWNED, {
        "instance_id": instance_id, "expected_task_state": expected_task_state,
        "expected_host": host, "vm_state": vm_state, "power_state": power_state,
        "now": now}).rowcount == 1


def instance_get_by_ref(s, project_id, ref):
    """A project's live VM by id, else by name. Names may repeat (see
    ``[api] unique_vm_name_scope``): several VMs of that name is a 409
    listing their ids."""
    query = _live_instances().where(Instance.project_id == project_id)
    if is_uuid(ref):
        inst = s.scalars(query.where(Instance.id == str(ref))).first()
        if inst is not None:
            return inst
    named = s.scalars(query.where(Instance.name == str(ref))
                      .order_by(Instance.created_at, Instance.id).limit(21)).all()
    if not named:
        raise exception.InstanceNotFound(instance=ref)
    if len(named) > 1:
        raise exception.Conflict(reason="%s VMs are named '%s' (ids %s); use an id." % (
            "More than 20" if len(named) > 20 else len(named), ref,
            ", ".join(i.id for i in named[:20])))
    return named[0]


def instance_page(s, project_id, columns, limit, marker=None):
    """Up to ``limit`` of a project's live VMs, oldest first, as plain tuples
    of ``columns`` (Core rows: no ORM objects to build for a long list).
    ``marker``: the id of the VM the previous page ended with; it may have
    been deleted since. MarkerNotFound (400) if the project has no such VM."""
    table = Instance.__table__
    query = sa.select(*[table.c[name] for name in columns]).where(
        table.c.project_id == project_id, table.c.deleted_at.is_(None))
    if marker is not None:
        after = s.connection().execute(
            sa.select(table.c.created_at, table.c.id)
            .where(table.c.id == marker, table.c.project_id == project_id)
        ).first() if is_uuid(marker) else None
        if after is None:
            raise exception.MarkerNotFound(marker=marker)
        query = query.where(sa.tuple_(table.c.created_at, table.c.id) > sa.tuple_(*after))
    return s.connection().execute(
        query.order_by(table.c.created_at, table.c.id).limit(limit)).all()


def instance_list(s, project_id=None, host=None):
    query = _live_instances().order_by(Instance.created_at, Instance.id)
    if project_id is not None:
        query = query.where(Instance.project_id == project_id)
    if host is not None:
        query = query.where(Instance.host == host)
    return s.scalars(query).all()


_UNSET = object()


def instance_update_if(s, instance_id, values, expected_task_state=_UNSET,
                       expected_host=_UNSET, expected_vm_state=_UNSET, expected_locked=_UNSET,
                       involved_host=_UNSET, not_in_transit_on=_UNSET):
    """Update a live VM only if it is still in the expected state.

    ``expected_task_state`` may be a value or a tuple of values (None allowed).
    ``involved_host``: the VM is on that host, or its move in progress has
    it as source or destination (a report of either end of a move).
    ``not_in_transit_on``: no move in progress of the VM involves that host
    (its domain there may be arriving or leaving: not the host's to judge).
    Returns True when the row was updated."""
    cond = [Instance.id == instance_id, Instance.deleted_at.is_(None)]
    if involved_host is not _UNSET:
        cond.append(sa.or_(Instance.host == involved_host,
                           vm_migrations.in_progress_involving(Instance.id, involved_host)))
    if not_in_transit_on is not _UNSET:
        cond.append(~vm_migrations.in_progress_involving(Instance.id, not_in_transit_on))
    for column, expected in ((Instance.task_state, expected_task_state),
                             (Instance.host, expected_host),
                             (Instance.vm_state, expected_vm_state),
                             (Instance.locked, expected_locked)):
        if expected is _UNSET:
            continue
        options = expected if isinstance(expected, (tuple, list)) else (expected,)
        parts = [column.is_(None) if o is None else column == o for o in options]
        cond.append(sa.or_(*parts))
    values = dict(values, updated_at=utcnow())
    result = s.execute(sa.update(Instance).where(*cond).values(**values)
                       .execution_options(synchronize_session=False))
    return result.rowcount == 1


def instance_rename(s, instance_id, name, **conditions):
    """``instance_update_if`` of the name; DuplicateName (409) if a live VM
    of its scope has that name (see ``instance_insert``)."""
    try:
        return instance_update_if(s, instance_id, {"name": name}, **conditions)
    except exc.IntegrityError as e:
        raise exception.DuplicateName(kind="VM", name=name) from e


def instance_soft_delete(s, instance_id, **conditions):
    """Mark a VM deleted (its name becomes free again); releases what it and
    its migrations hold on any host and gives its quota back to the project.
    Every delete goes through here."""
    now = utcnow()
    done = instance_update_if(s, instance_id, {
        "vm_state": states.DELETED, "task_state": None, "deleted_at": now,
        "power_state": states.NOSTATE}, **conditions)
    if done:
        allocations.release_instance(s, instance_id)
        fixed_ips.release_instance(s, instance_id)
        sizes = s.execute(sa.select(Instance.project_id, Instance.vcpus, Instance.memory_mb)
                          .where(Instance.id == instance_id)).one()
        auth.quota_release(s, sizes.project_id, sizes.vcpus, sizes.memory_mb)
    return done


# -- services and compute nodes ---------------------------------------------

def service_heartbeat(s, host, binary, resources=None):
    """Record that a service is alive; for compute also its capacity."""
    now = utcnow()
    svc = s.scalars(sa.select(Service).where(Service.host == host,
                                             Service.binary == binary)).first()
    if svc is None:
        svc = Service(host=host, binary=binary, disabled=False, created_at=now)
        s.add(svc)
    svc.last_heartbeat = now
    if resources is not None:
        node = s.get(ComputeNode, host)
        if node is None:
            node = ComputeNode(host=host, vcpus_used=0, memory_mb_used=0, local_gb_used=0)
            s.add(node)
        node.vcpus = int(resources["vcpus"])
        node.memory_mb = int(resources["memory_mb"])
        node.local_gb = int(resources["local_gb"])
        node.hypervisor_type = resources.get("hypervisor_type")
        node.hypervisor_version = resources.get("hypervisor_version")
        cpu_info = resources.get("cpu_info")
        node.cpu_info = None if cpu_info is None else json.dumps(cpu_info, sort_keys=True)
        node.updated_at = now
    s.flush()
    return svc


def service_list(s):
    return s.scalars(sa.select(Service).order_by(Service.binary, Service.host)).all()


def compute_hosts(s):
    """(service, node) for every compute service that reported capacity."""
    rows = s.execute(sa.select(Service, ComputeNode)
                     .join(ComputeNode, ComputeNode.host == Service.host)
                     .where(Service.binary == "mininova-compute")).all()
    return [(svc, node) for svc, node in rows]


def instance_attempts(inst):
    """The hosts (and errors) a VM's build already failed on."""
    return json.loads(inst.sched_attempts) if inst.sched_attempts else []
