"""Migration records (the ``migrations`` table): one per move of a VM between
hosts, each a function of an open session like ``common.db.api``.

A move in progress is one whose status is not in ``states.MIGRATION_ENDED``;
its ``uuid`` is the consumer of the source host's allocation while the VM
itself holds the destination (``common.db.allocations``).
"""
import uuid as uuidlib

import sqlalchemy as sa

from common import exception, states
from common.db import models
from common.db.models import utcnow

_MIGRATIONS = models.Migration.__table__
M = _MIGRATIONS.c

# A move's fields as RPC rows carry them (see ``as_dict``).
FIELDS = (M.uuid, M.instance_id, M.source_host, M.dest_host, M.migration_type, M.status)

IN_PROGRESS = M.status.not_in(sorted(states.MIGRATION_ENDED))



def in_progress_involving(instance_id_column, host):
    """EXISTS a move in progress of the VM ``instance_id_column`` with
    ``host`` as its source or destination (for a WHERE on instances)."""
    return sa.exists().where(M.instance_id == instance_id_column, IN_PROGRESS,
                             sa.or_(M.source_host == host, M.dest_host == host))


_OF_INSTANCE = (sa.select(*FIELDS)
                .where(M.instance_id == sa.bindparam("instance_id"), IN_PROGRESS)
                .order_by(M.created_at.desc(), M.id.desc()).limit(1))


def create(s, instance_id, migration_type, source_host, dest_host=None, status="pre-migrating",
           old_flavor_id=None, new_flavor_id=None, request_id=None):
    """A new migration record; its uuid."""
    if migration_type not in states.MIGRATION_TYPES:
        raise ValueError("unknown migration type %r" % migration_type)
    now = utcnow()
    migration_uuid = str(uuidlib.uuid4())
    s.execute(sa.insert(_MIGRATIONS).values(
        uuid=migration_uuid, instance_id=instance_id, source_host=source_host,
        dest_host=dest_host, migration_type=migration_type, status=status,
        old_flavor_id=old_flavor_id, new_flavor_id=new_flavor_id, request_id=request_id,
        created_at=now, updated_at=now))
    return migration_uuid


def get(s, migration_uuid):
    """The migration row by uuid; MigrationNotFound if there is none."""
    row = s.execute(sa.select(_MIGRATIONS).where(M.uuid == migration_uuid)).first()
    if row is None:
        raise exception.MigrationNotFound(migration=migration_uuid)
    return row


def update_if(s, migration_uuid, values, expected_status=None):
    """Update a migration (only if its status is one of ``expected_status``,
    when given); True if it was."""
    cond = [M.uuid == migration_uuid]
    if expected_status is not None:
        options = (expected_status,) if isinstance(expected_status, str) else expected_status
        cond.append(M.status.in_(list(options)))
    result = s.execute(sa.update(_MIGRATIONS).where(*cond)
                       .values(dict(values, updated_at=utcnow())))
    return result.rowcount == 1


def in_progress_for_instance(s, instance_id):
    """The VM's newest move in progress as a row of ``FIELDS``, or None."""
    return s.execute(_OF_INSTANCE, {"instance_id": instance_id}).first()


def in_progress_by_uuid(s, migration_uuid):
    """The move ``migration_uuid`` as a row of ``FIELDS`` if it is in
    progress, else None."""
    return s.execute(sa.select(*FIELDS).where(M.uuid == migration_uuid, IN_PROGRESS)).first()


def in_progress_for_host(s, host):
    """The moves in progress whose source or destination is ``host``."""
    return s.execute(sa.select(*FIELDS).where(
        IN_PROGRESS, sa.or_(M.source_host == host, M.dest_host == host))).all()


def in_progress_by_instance(s):
    """{instance id: row of ``FIELDS``} of every move in progress."""
    rows = s.execute(sa.select(*FIELDS).where(IN_PROGRESS)
                     .order_by(M.created_at, M.id)).all()
    return {row.instance_id: row for row in rows}


def as_dict(row):
    """A move as ``nova_compute.ownership`` reads it from an RPC row."""
    if row is None:
        return None
    return {"uuid": row.uuid, "source_host": row.source_host, "dest_host": row.dest_host,
            "type": row.migration_type, "status": row.status}


def evacuations_to_clean(s, source_host=None):
    """The evacuations away from ``source_host`` (None: from any host) whose
    copy there may still exist: in progress, or "done" (rebuilt elsewhere)
    and not yet cleaned (Nova's _destroy_evacuated_instances reads the
    same), as rows of FIELDS, oldest first."""
    cond = [M.migration_type == "evacuation",
            sa.or_(IN_PROGRESS, M.status == states.EVACUATION_DONE)]
    if source_host is not None:
        cond.append(M.source_host == source_host)
    return s.execute(sa.select(*FIELDS).where(*cond).order_by(M.created_at, M.id)).all()


# The listings (GET /v1/migrations, os-migrations): newest first.
_LISTED = sa.select(_MIGRATIONS).order_by(M.created_at.desc(), M.id.desc())


def listing(s, instance_id=None, host=None, status=None, migration_type=None, limit=1000):
    """Migration rows, newest first; ``host`` matches the source or the
    destination."""
    query = _LISTED
    if instance_id is not None:
        query = query.where(M.instance_id == instance_id)
    if host is not None:
        query = query.where(sa.or_(M.source_host == host, M.dest_host == host))
    if status is not None:
        query = query.where(M.status == status)
    if migration_type is not None:
        query = query.where(M.migration_type == migration_type)
    return s.execute(query.limit(limit)).all()


def finished_before(s, when, migration_types=("resize", "migration")):
    """Uuids and VMs of the moves of ``migration_types`` that await a confirm
    ("finished") since before ``when``: the auto-confirm's."""
    return s.execute(sa.select(M.uuid, M.instance_id).where(
        M.status == "finished", M.migration_type.in_(list(migration_types)),
        M.updated_at < when)).all()
