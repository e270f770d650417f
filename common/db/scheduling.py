"""The statements of the scheduling hot path (scheduler and conductor), each
a function of an open session like ``common.db.api``.

They run once or twice per VM built, so they are plain Core statements built
once at import, with bound parameters: SQLAlchemy then reuses their compiled
form and cache key instead of building an ORM query and its cache key per
call (that was a fifth of the scheduler's CPU), and rows come back as named
tuples, not ORM objects.
"""
import sqlalchemy as sa

from common.db import actions, models, vm_migrations
from common.db.models import utcnow

# Tables, not ORM classes: statements on them skip the ORM layer entirely.
Service = models.Service.__table__.c
ComputeNode = models.ComputeNode.__table__.c
Instance = models.Instance.__table__.c
Image = models.Image.__table__.c
InstanceAction = models.InstanceAction.__table__.c
_INSTANCES = models.Instance.__table__
_NOW = sa.bindparam("now", type_=sa.DateTime())
_ACTIONS = models.InstanceAction.__table__

_HOSTS = (sa.select(Service.host, Service.disabled, Service.disabled_reason,
                    Service.last_heartbeat, ComputeNode.vcpus, ComputeNode.vcpus_used,
                    ComputeNode.memory_mb, ComputeNode.memory_mb_used, ComputeNode.local_gb,
                    ComputeNode.local_gb_used, ComputeNode.generation)
          .join_from(models.Service.__table__, models.ComputeNode.__table__,
                     ComputeNode.host == Service.host)
          .where(Service.binary == "mininova-compute"))

_INSTANCE_FIELDS = (Instance.id, Instance.name, Instance.project_id, Instance.user_id,
                    Instance.image_id, Instance.flavor_id, Instance.vcpus, Instance.memory_mb,
                    Instance.root_gb, Instance.host, Instance.vm_state, Instance.task_state,
                    Instance.power_state, Instance.mac_address, Instance.ip_address,
                    Instance.group_id, Instance.sched_attempts, Instance.created_at,
                    Instance.updated_at)
_INSTANCE = (sa.select(*_INSTANCE_FIELDS)
             .where(Instance.id == sa.bindparam("instance_id"), Instance.deleted_at.is_(None)))

# The VM with its move in progress, if any (one statement: the conductor
# answers this for every build and power task).
_MOVES = models.Migration.__table__
_MOVE_FIELDS = tuple(c.label("migration_" + c.name) for c in vm_migrations.FIELDS)
_WITH_MOVE = (sa.select(*_INSTANCE_FIELDS, *_MOVE_FIELDS)
              .outerjoin_from(_INSTANCES, _MOVES, sa.and_(
                  _MOVES.c.instance_id == Instance.id, vm_migrations.IN_PROGRESS))
              .where(Instance.deleted_at.is_(None)))
_INSTANCE_WITH_MOVE = _WITH_MOVE.where(Instance.id == sa.bindparam("instance_id"))
_INSTANCES_OF_HOST = (_WITH_MOVE.where(sa.or_(
    Instance.host == sa.bindparam("host"),
    _MOVES.c.source_host == sa.bindparam("host"),
    _MOVES.c.dest_host == sa.bindparam("host")))
    .order_by(Instance.created_at, Instance.id))

_IMAGE = (sa.select(Image.id, Image.name, Image.checksum, Image.size, Image.disk_format)
          .where(Image.id == sa.bindparam("image_id"), Image.deleted_at.is_(None)))

_ACTION_ID = (sa.select(InstanceAction.id)
              .where(InstanceAction.instance_id == sa.bindparam("instance_id"),
                     InstanceAction.request_id == sa.bindparam("request_id")))

_START_SPAWNING = (sa.update(_INSTANCES)
                   .where(Instance.id == sa.bindparam("instance_id"),
                          Instance.deleted_at.is_(None),
                          Instance.task_state == sa.bindparam("expected_task_state"))
                   .values(host=sa.bindparam("host"), task_state=sa.bindparam("task_state"),
                           updated_at=_NOW))

_SPAWNED = (sa.update(_INSTANCES)
            .where(Instance.id == sa.bindparam("instance_id"), Instance.deleted_at.is_(None),
                   Instance.task_state == sa.bindparam("expected_task_state"),
                   Instance.host == sa.bindparam("expected_host"))
            .values(vm_state=sa.bindparam("vm_state"), task_state=None,
                    power_state=sa.bindparam("power_state"), launched_at=_NOW, fault=None,
                    updated_at=_NOW))

_EVENTS_INSERT = sa.insert(models.InstanceActionEvent.__table__)

_ACTION_FINISH = (sa.update(_ACTIONS)
                  .where(InstanceAction.id == sa.bindparam("action_id"),
                         InstanceAction.instance_id == sa.bindparam("action_instance_id"),
                         InstanceAction.result.is_(None))
                  .values(result=sa.bindparam("result"), message=sa.bindparam("message"),
                          # never before the start (clocks of two hosts)
                          finish_time=sa.case(
                              (InstanceAction.start_time > _NOW,
                               InstanceAction.start_time),
                              else_=_NOW)))


def host_rows(s):
    """One row (host, disabled, disabled_reason, last_heartbeat, vcpus,
    vcpus_used, memory_mb, memory_mb_used, local_gb, local_gb_used,
    generation) per compute service that reported capacity."""
    return s.execute(_HOSTS).all()


def instance_row(s, instance_id):
    """A live VM as a row with the fields of ``payloads.instance`` (plus
    group_id, sched_attempts, created_at, updated_at, user_id); None if gone."""
    return s.execute(_INSTANCE, {"instance_id": instance_id}).first()


def instance_with_move(s, instance_id):
    """``instance_row`` plus its move in progress (``migration_uuid``,
    ``migration_source_host``, ... None when it has none); None if gone."""
    return s.execute(_INSTANCE_WITH_MOVE, {"instance_id": instance_id}).first()


def instances_of_host(s, host):
    """Rows as ``instance_with_move`` of the live VMs on ``host`` or with a
    move in progress from or to it, oldest first."""
    return s.execute(_INSTANCES_OF_HOST, {"host": host}).all()


def move_of(row):
    """The move in progress of an ``instance_with_move`` row as
    ``vm_migrations.as_dict`` makes it, or None."""
    if row.migration_uuid is None:
        return None
    return {"uuid": row.migration_uuid, "source_host": row.migration_source_host,
            "dest_host": row.migration_dest_host, "type": row.migration_migration_type,
            "status": row.migration_status}


def image_row(s, image_id):
    """A live image by id, with the fields of ``payloads.image``; None if gone."""
    return s.execute(_IMAGE, {"image_id": image_id}).first()


def action_id(s, instance_id, request_id):
    """The id of the action (instance_id, request_id), or None."""
    return s.execute(_ACTION_ID, {"instance_id": instance_id,
                                  "request_id": request_id}).scalar()


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


def events_insert(s, action_id, events):
    """Insert events of the action ``action_id`` in one statement: dicts with
    event, host, start_time, finish_time (datetimes or ISO 8601 text),
    result, details, as ``actions.events_add`` takes them."""
    if events:
        s.execute(_EVENTS_INSERT, [{
            "action_id": action_id, "event": actions.cut("event", e["event"]),
            "host": actions.cut("host", e.get("host")),
            "start_time": actions.parse_time(e.get("start_time")) or utcnow(),
            "finish_time": actions.parse_time(e.get("finish_time")),
            "result": actions.cut("result", e.get("result")), "details": e.get("details"),
        } for e in events])


def action_finish(s, action_id, instance_id, result, message, now):
    """Finish the action by id, unless already finished (first finish wins)."""
    s.execute(_ACTION_FINISH, {"action_id": action_id, "action_instance_id": instance_id,
                               "result": result, "message": message, "now": now})
