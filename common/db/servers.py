"""VMs as Nova's /servers reads them: one by id (never by name: clients
resolve names themselves, and a name could match several VMs), and pages in
Nova's order (newest first) with Nova's filters.

Scope: ``project_id`` None means every project (admins only; the caller
decides). Live VMs only, except with ``changes_since``, which, as in Nova,
also returns the VMs deleted since then (status DELETED)."""
import time

import regex
import sqlalchemy as sa

from common import exception
from common.db.api import is_uuid
from common.db.models import Instance

# The time one list may spend in its filters' regular expressions (the
# ``regex`` module's search timeout; ``re`` has none): a pattern that
# backtracks catastrophically, e.g. ``(a+)+$``, must not hold an API thread.
SEARCH_BUDGET = 1.0


def get(s, server_id, project_id=None):
    """A live VM by id, in ``project_id`` (None: any project); else
    InstanceNotFound (another project's VM does not exist for the caller)."""
    query = sa.select(Instance).where(Instance.deleted_at.is_(None))
    inst = None
    if is_uuid(server_id):
        query = query.where(Instance.id == str(server_id))
        if project_id is not None:
            query = query.where(Instance.project_id == project_id)
        inst = s.scalars(query).first()
    if inst is None:
        # A 404 repeats enough of an unknown id to recognise it, never a 10 kB path.
        raise exception.InstanceNotFound(instance=str(server_id)[:64])
    return inst


class Filters:
    """What a list may be narrowed by; each None when absent. ``name``,
    ``ip``, ``ip6``: regular expressions searched in the name and the fixed
    addresses; ``status``: a Nova status, compared by ``status_of`` (the
    surface's own mapping, passed in: common knows no API surface)."""

    def __init__(self, name=None, status=None, image=None, flavor=None, ip=None, ip6=None,
                 changes_since=None):
        self.name, self.status, self.image, self.flavor = name, status, image, flavor
        self.ip, self.ip6, self.changes_since = ip, ip6, changes_since

    def in_python(self):
        return any(v is not None for v in (self.name, self.status, self.ip, self.ip6))


def _search(pattern):
    """``pattern`` as a regular expression; one that does not compile is
    searched for literally (OSC looks names up with ``?name=<the name>``,
    and a name may hold "(" or "[")."""
    try:
        return regex.compile(pattern)
    except (regex.error, OverflowError, RecursionError, ValueError):
        return regex.compile(regex.escape(pattern))


class _Budget:
    """Searches that share one deadline; past it, Invalid (400) naming the
    filter whose expression took too long."""

    def __init__(self, seconds):
        self.deadline = time.monotonic() + seconds

    def search(self, field, compiled, text):
        try:
            return compiled.search(text, timeout=max(self.deadline - time.monotonic(), 0.001))
        except TimeoutError:
            raise exception.Invalid(
                reason="the %s filter's regular expression takes too long to match; "
                       "simplify it" % field) from None


def _matcher(filters, status_of, budget):
    name = _search(filters.name) if filters.name is not None else None
    ip = _search(filters.ip) if filters.ip is not None else None
    ip6 = _search(filters.ip6) if filters.ip6 is not None else None
    status = filters.status.upper() if filters.status is not None else None

    def matches(inst):
        if name is not None and not budget.search("name", name, inst.name or ""):
            return False
        if status is not None and status_of(inst.vm_state, inst.task_state) != status:
            return False
        address = inst.ip_address or ""
        if ip is not None and (":" in address or not address
                               or not budget.search("ip", ip, address)):
            return False
        if ip6 is not None and (":" not in address or not budget.search("ip6", ip6, address)):
            return False
        return True
    return matches


def page(s, project_id, filters, limit, marker=None, status_of=None):
    """Up to ``limit`` VMs matching ``filters``, newest first (created_at,
    then id, descending: Nova's default sort), after the VM ``marker`` (an
    id the caller may see, deleted or not; else MarkerNotFound)."""
    query = sa.select(Instance)
    if project_id is not None:
        query = query.where(Instance.project_id == project_id)
    if filters.changes_since is not None:
        # updated_at moves with every change, a delete included.
        query = query.where(Instance.updated_at >= filters.changes_since)
    else:
        query = query.where(Instance.deleted_at.is_(None))
    if filters.image is not None:
        query = query.where(Instance.image_id == filters.image)
    if filters.flavor is not None:
        query = query.where(Instance.flavor_id == filters.flavor)
    if marker is not None:
        after = None
        if is_uuid(marker):
            marker_query = sa.select(Instance.created_at, Instance.id).where(
                Instance.id == marker)
            if project_id is not None:
                marker_query = marker_query.where(Instance.project_id == project_id)
            after = s.execute(marker_query).first()
        if after is None:
            raise exception.MarkerNotFound(marker=marker)
        query = query.where(sa.tuple_(Instance.created_at, Instance.id) < sa.tuple_(*after))
    query = query.order_by(Instance.created_at.desc(), Instance.id.desc())
    if limit == 0:
        return []
    if not filters.in_python():
        return list(s.scalars(query.limit(limit)))
    matches = _matcher(filters, status_of, _Budget(SEARCH_BUDGET))
    found = []
    for inst in s.scalars(query.execution_options(yield_per=200)):
        if matches(inst):
            found.append(inst)
            if len(found) >= limit:
                break
    return found
