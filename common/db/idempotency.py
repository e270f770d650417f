"""X-Idempotency-Key of POST /v1/vms: the row tying a project's key to the
VM its first create made (table idempotency_keys, migration 0018).

``claim`` runs first in the create's transaction: on PostgreSQL its INSERT
... ON CONFLICT DO NOTHING waits for another transaction inserting the same
key (another API process, a client's retry) to end, then either inserts (the
other rolled back) or finds the other's committed row; on SQLite writers are
serialized anyway (BEGIN IMMEDIATE). Two creates with one key therefore never
both commit a VM, whatever process they reach."""
import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from common.db.models import IdempotencyKey, utcnow

_T = IdempotencyKey.__table__
CLAIM_ATTEMPTS = 3  # a held row may vanish between the INSERT and the read (released)


def _is_live(row, window_seconds, now):
    return row.created_at > now - datetime.timedelta(seconds=window_seconds)


def get(s, project_id, key, window_seconds, now=None):
    """The row (instance_id, request_hash, created_at) holding ``key`` in
    the window, or None."""
    row = s.execute(sa.select(_T.c.instance_id, _T.c.request_hash, _T.c.created_at).where(
        _T.c.project_id == project_id, _T.c.key == key)).first()
    return row if row is not None and _is_live(row, window_seconds, now or utcnow()) else None


def claim(s, project_id, key, instance_id, request_hash, window_seconds, now=None):
    """Tie ``key`` to ``instance_id`` in this transaction: None when done,
    else the row of the create holding it within the window (this
    transaction must then be abandoned)."""
    now = now or utcnow()
    insert = postgresql.insert if s.get_bind().dialect.name == "postgresql" else sqlite.insert
    values = {"project_id": project_id, "key": key, "instance_id": instance_id,
              "request_hash": request_hash, "created_at": now}
    for _ in range(CLAIM_ATTEMPTS):
        inserted = s.execute(insert(_T).values(**values).on_conflict_do_nothing(
            index_elements=["project_id", "key"]))
        if inserted.rowcount == 1:
            return None
        row = s.execute(sa.select(_T.c.instance_id, _T.c.request_hash, _T.c.created_at).where(
            _T.c.project_id == project_id, _T.c.key == key)).first()
        if row is None:
            continue  # released meanwhile: try again
        if _is_live(row, window_seconds, now):
            return row
        # Expired: taken over, unless another create took it over first.
        taken = s.execute(sa.update(_T).where(
            _T.c.project_id == project_id, _T.c.key == key,
            _T.c.created_at == row.created_at).values(**values))
        if taken.rowcount == 1:
            return None
    raise RuntimeError("idempotency key %r kept changing hands" % key)


def release(s, project_id, key, instance_id):
    """Free ``key`` if it still names ``instance_id`` (its create failed
    after the commit: a retry with the key must create anew)."""
    s.execute(sa.delete(_T).where(_T.c.project_id == project_id, _T.c.key == key,
                                  _T.c.instance_id == instance_id))


def purge(s, window_seconds, now=None):
    """Delete the keys older than the window; how many."""
    before = (now or utcnow()) - datetime.timedelta(seconds=window_seconds)
    return s.execute(sa.delete(_T).where(_T.c.created_at <= before)).rowcount
