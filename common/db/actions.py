"""The per-VM action timeline (Nova's instance actions), each function of an
open session like ``common.db.api``.

An *action* is one user request on a VM (create, delete, stop, ...), keyed by
(instance id, request id); its *events* are the steps each daemon took for it.
RPC is at-least-once, so every write here is idempotent: starting an action
twice returns the same row, a redelivered event is stored once, and an event
that arrives before its action (or without one) creates the action on the fly
under the name "unknown", so that no step is ever lost. Rows outlive the VM.

Times are naive UTC (``models.utcnow``); ``parse_time`` turns the ISO 8601
strings that travel over RPC back into that.
"""
import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from common import exception
from common.db.models import Instance, InstanceAction, InstanceActionEvent, utcnow

SUCCESS = "success"
ERROR = "error"
UNKNOWN_ACTION = "unknown"

# Column sizes, so that an over-long value is cut rather than failing the write.
_LIMITS = {"action": 32, "event": 64, "host": 255, "result": 16, "request_id": 64,
           "project_id": 64, "user_id": 64}


def cut(field, value):
    """``value`` as text cut to the column size of ``field`` (None stays None)."""
    if value is None:
        return None
    value = str(value)
    return value[:_LIMITS[field]]


_cut = cut


def parse_time(value):
    """None, a datetime or an ISO 8601 string (naive = UTC, 'Z' or an offset
    allowed) -> naive UTC datetime or None."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime.datetime):
        dt = value
    else:
        text = str(value).strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        dt = datetime.datetime.fromisoformat(text)
    if dt.tzinfo is not None:
        dt = dt.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return dt


def format_time(dt):
    """Naive UTC datetime -> ISO 8601 with microseconds and 'Z' (for RPC)."""
    return None if dt is None else dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _find(s, instance_id, request_id):
    return s.scalars(sa.select(InstanceAction).where(
        InstanceAction.instance_id == instance_id,
        InstanceAction.request_id == request_id)).first()


def _insert_if_missing(s, values):
    """INSERT the action unless (instance_id, request_id) exists; never fails
    on a concurrent duplicate and never aborts the caller's transaction."""
    dialect = s.get_bind().dialect.name
    if dialect in ("postgresql", "sqlite"):
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        s.execute(insert(InstanceAction).values(**values)
                  .on_conflict_do_nothing(index_elements=["instance_id", "request_id"]))
        return
    try:
        with s.begin_nested():
            s.add(InstanceAction(**values))
    except sa.exc.IntegrityError:
        pass


def _owner(s, instance_id, project_id, user_id):
    """Who an action belongs to: the VM's own project when its row exists
    (authoritative; the row is kept when the VM is deleted), else the caller's."""
    inst = s.get(Instance, instance_id)
    if inst is not None:
        return inst.project_id, user_id if user_id is not None else inst.user_id
    return project_id or "", user_id


def _get_or_create(s, instance_id, request_id, action, project_id=None, user_id=None,
                   start_time=None):
    row = _find(s, instance_id, request_id)
    if row is not None:
        return row, False
    project_id, user_id = _owner(s, instance_id, project_id, user_id)
    _insert_if_missing(s, {
        "instance_id": instance_id, "request_id": _cut("request_id", request_id),
        "action": _cut("action", action), "project_id": _cut("project_id", project_id),
        "user_id": _cut("user_id", user_id), "start_time": start_time or utcnow()})
    return _find(s, instance_id, request_id), True


def action_start(s, instance_id, request_id, action, project_id, user_id=None,
                 start_time=None):
    """Record that ``action`` began; idempotent on (instance_id, request_id):
    a duplicate returns the existing row. A row that an early event created
    as "unknown" gets its real name, owner and the earlier start time."""
    start_time = parse_time(start_time) or utcnow()
    row, created = _get_or_create(s, instance_id, request_id, action, project_id, user_id,
                                  start_time)
    if not created and row.action == UNKNOWN_ACTION and action != UNKNOWN_ACTION:
        project_id, user_id = _owner(s, instance_id, project_id, user_id)
        row.action = _cut("action", action)
        row.project_id = _cut("project_id", project_id)
        row.user_id = _cut("user_id", user_id) if user_id is not None else row.user_id
        row.start_time = min(row.start_time, start_time)
        s.flush()
    return row


def action_finish(s, instance_id, request_id, result, message=None, finish_time=None,
                  project_id=None, user_id=None):
    """Record the outcome of an action ("success" or "error").

    The first finish wins: a redelivered or late finish (e.g. from a handler
    that found the work already done) changes nothing. A finish for an action
    nobody started creates it as "unknown" (nothing is lost)."""
    finish_time = parse_time(finish_time) or utcnow()
    row, _ = _get_or_create(s, instance_id, request_id, UNKNOWN_ACTION, project_id, user_id,
                            finish_time)
    action_finish_by_id(s, row.id, instance_id, result, message, finish_time)
    s.expire(row)  # the UPDATE went past the ORM


def event_record(s, instance_id, request_id, event, host=None, start_time=None,
                 finish_time=None, result=None, details=None, project_id=None, user_id=None):
    """Add one step to the action of (instance_id, request_id), creating the
    action as "unknown" if it does not exist yet. A redelivered event (same
    action, event, host and start time) is stored once. Returns the event."""
    start_time = parse_time(start_time) or utcnow()
    finish_time = parse_time(finish_time)
    action, _ = _get_or_create(s, instance_id, request_id, UNKNOWN_ACTION, project_id,
                               user_id, start_time)
    host = _cut("host", host)
    event = _cut("event", event)
    existing = s.scalars(sa.select(InstanceActionEvent).where(
        InstanceActionEvent.action_id == action.id,
        InstanceActionEvent.event == event,
        InstanceActionEvent.host.is_(None) if host is None else InstanceActionEvent.host == host,
        InstanceActionEvent.start_time == start_time)).first()
    if existing is not None:
        return existing
    row = InstanceActionEvent(action_id=action.id, event=event, host=host,
                              start_time=start_time, finish_time=finish_time,
                              result=_cut("result", result), details=details)
    s.add(row)
    s.flush()
    return row


def action_list(s, instance_id, project_id=None):
    """A VM's actions, newest first; with ``project_id`` only that project's."""
    query = sa.select(InstanceAction).where(InstanceAction.instance_id == instance_id)
    if project_id is not None:
        query = query.where(InstanceAction.project_id == project_id)
    return s.scalars(query.order_by(InstanceAction.start_time.desc(),
                                    InstanceAction.id.desc())).all()


def action_get(s, instance_id, request_id):
    """(action, [events in start order]); InstanceActionNotFound if missing."""
    action = _find(s, instance_id, request_id)
    if action is None:
        raise exception.InstanceActionNotFound(request_id=request_id,
                                               instance=instance_id)
    events = s.scalars(sa.select(InstanceActionEvent)
                       .where(InstanceActionEvent.action_id == action.id)
                       .order_by(InstanceActionEvent.start_time,
                                 InstanceActionEvent.id)).all()
    return action, events


# Built once: constructing a statement costs more CPU than running it (these
# run for every VM built).
_A = InstanceAction.__table__.c
_NOW = sa.bindparam("now", type_=sa.DateTime())
_INSERT_ACTION = sa.insert(InstanceAction.__table__).returning(_A.id)
_INSERT_EVENT = sa.insert(InstanceActionEvent.__table__)
_ACTION_ID = sa.select(_A.id).where(_A.instance_id == sa.bindparam("instance_id"),
                                    _A.request_id == sa.bindparam("request_id"))
_FINISH = (sa.update(InstanceAction.__table__)
           .where(_A.id == sa.bindparam("action_id"),
                  _A.instance_id == sa.bindparam("action_instance_id"), _A.result.is_(None))
           .values(result=sa.bindparam("result"), message=sa.bindparam("message"),
                   # never before the start (clocks of two hosts)
                   finish_time=sa.case((_A.start_time > _NOW, _A.start_time), else_=_NOW)))


def action_id(s, instance_id, request_id):
    """The id of the action (instance_id, request_id), or None."""
    return s.execute(_ACTION_ID, {"instance_id": instance_id,
                                  "request_id": request_id}).scalar()


def action_id_or_unknown(s, instance_id, request_id):
    """The id of the action (instance_id, request_id), created as "unknown"
    if missing (as any step arriving before its action is)."""
    found = action_id(s, instance_id, request_id)
    if found is None:
        found = _get_or_create(s, instance_id, request_id, UNKNOWN_ACTION)[0].id
    return found


def action_finish_by_id(s, action_id, instance_id, result, message=None, now=None):
    """Finish the action by id, unless already finished (first finish wins)."""
    s.execute(_FINISH, {"action_id": action_id, "action_instance_id": instance_id,
                        "result": _cut("result", result), "message": message,
                        "now": now or utcnow()})


# action_begin's two INSERTs in one statement (one round trip), where the
# database takes an INSERT in a WITH: PostgreSQL.
_BEGIN_ACTION = sa.text("""
WITH action AS (
    INSERT INTO instance_actions (instance_id, request_id, action, project_id, user_id,
                                  start_time)
    VALUES (:instance_id, :request_id, :action, :project_id, :user_id, :start_time)
    RETURNING id)
INSERT INTO instance_action_events (action_id, event, host, start_time, finish_time, result,
                                    details)
SELECT id, :event, :host, :start_time, :start_time, :result, :details FROM action
RETURNING action_id""")


def action_begin(s, instance_id, request_id, action, project_id, user_id, event, host,
                 details=None):
    """A new action with its first, instantaneous event, in the caller's
    transaction: Core INSERTs (no ORM flush; one statement on PostgreSQL),
    for the API's hot path (a create or a user action that it has just
    guarded in the same transaction). Returns the action's id."""
    now = utcnow()
    conn = s.connection()
    action_row = {
        "instance_id": instance_id, "request_id": _cut("request_id", request_id),
        "action": _cut("action", action), "project_id": _cut("project_id", project_id),
        "user_id": _cut("user_id", user_id), "start_time": now}
    event_row = {"event": _cut("event", event), "host": _cut("host", host),
                 "start_time": now, "finish_time": now, "result": SUCCESS, "details": details}
    if conn.dialect.name == "postgresql":
        return conn.execute(_BEGIN_ACTION, dict(action_row, **event_row)).scalar_one()
    action_id = conn.execute(_INSERT_ACTION, action_row).scalar_one()
    conn.execute(_INSERT_EVENT, dict(event_row, action_id=action_id))
    return action_id


def events_add(s, action_id, events):
    """Add events of the action ``action_id`` (dicts with event, host,
    start_time, finish_time, result, details; times as ISO text or
    datetimes) in one INSERT, in the caller's transaction. The caller
    guarantees they are new (e.g. it made a conditional state change in the
    same transaction)."""
    if events:
        s.execute(_INSERT_EVENT, [{
            "action_id": action_id, "event": _cut("event", e["event"]),
            "host": _cut("host", e.get("host")),
            "start_time": parse_time(e.get("start_time")) or utcnow(),
            "finish_time": parse_time(e.get("finish_time")),
            "result": _cut("result", e.get("result")), "details": e.get("details"),
        } for e in events])


def open_action(s, instance_id):
    """The VM's newest unfinished action (e.g. the create that stalled)."""
    return s.scalars(sa.select(InstanceAction)
                     .where(InstanceAction.instance_id == instance_id,
                            InstanceAction.result.is_(None))
                     .order_by(InstanceAction.start_time.desc(),
                               InstanceAction.id.desc())).first()


def finish_open_action(s, instance_id, event, host, result, details):
    """Record ``event`` on the VM's open action and finish it, in ``s``: for
    outcomes decided away from the request that started the action (the
    watchdog, a compute restart, the last failed build attempt)."""
    action = open_action(s, instance_id)
    if action is None:
        return None
    now = utcnow()
    events_add(s, action.id, [{
        "event": event, "host": host, "start_time": now, "finish_time": now,
        "result": result, "details": details}])
    action_finish_by_id(s, action.id, instance_id, result,
                        details if result == ERROR else None, now)
    s.expire(action)  # the UPDATE went past the ORM
    return action
