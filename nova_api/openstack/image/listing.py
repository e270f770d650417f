"""``GET /v2/images``: Glance's query parameters, filtering, sorting and
paging.

- Filters: ``id``, ``name``, ``status``, ``disk_format``,
  ``container_format`` (each a value, or ``in:a,b``; ``eq:a`` too),
  ``visibility`` (public, private, shared, community, all), ``owner``,
  ``member_status`` (accepted, pending, rejected, all; there are no members,
  so only shared images one owns are listed), ``tag`` (repeatable: all of
  them), ``protected`` and ``os_hidden`` (true or false; hidden images are
  left out unless asked for), ``size_min``/``size_max``; any other
  parameter is an extra property that must have that value.
- Sorting: ``sort_key`` (repeatable) with ``sort_dir`` (repeatable, or one
  for all), or ``sort=key[:dir],...``; then ``created_at`` and ``id``,
  descending, so every order is total. Default ``created_at`` descending.
- Paging: ``limit`` (default 25, capped at 1000), ``marker`` (an image id
  one may see; 400 otherwise). A full page gets a ``next`` link.

The images a caller may list are few enough to sort and page here, after
the database filtered them."""
import functools

from common import exception
from common.db import images as db_images
from common.db.models import Image

DEFAULT_LIMIT = 25
MAX_LIMIT = 1000
SORT_KEYS = ("name", "status", "container_format", "disk_format", "size", "id",
             "created_at", "updated_at", "min_ram", "min_disk", "visibility", "owner")
MULTI_VALUED = ("id", "name", "status", "disk_format", "container_format")
MEMBER_STATUSES = ("accepted", "pending", "rejected", "all")
# Parameters that are not property filters.
KNOWN = frozenset(("limit", "marker", "sort_key", "sort_dir", "sort", "visibility", "owner",
                   "member_status", "tag", "protected", "os_hidden", "size_min", "size_max",
                   "created_at", "updated_at") + MULTI_VALUED)


def _bad(field, reason):
    return exception.ValidationError(field=field, reason=reason)


def _values(name, raw):
    """The values one filter allows: ``in:a,b`` -> [a, b], ``eq:a`` or ``a`` -> [a]."""
    if raw.startswith("in:"):
        values = [v for v in raw[3:].split(",")]
        if not all(values):
            raise _bad(name, "an empty value in the in: list")
        return values
    return [raw[3:] if raw.startswith("eq:") else raw]


def _boolean(name, raw):
    lowered = raw.lower()
    if lowered not in ("true", "false"):
        raise _bad(name, "must be true or false")
    return lowered == "true"


def _integer(name, raw, minimum=0):
    if not raw.isdigit() or len(raw) > 18:
        raise _bad(name, "must be an integer >= %d" % minimum)
    return int(raw)


def _sort(args):
    """[(key, descending), ...] from sort_key/sort_dir or sort."""
    keys, dirs = args.getlist("sort_key"), args.getlist("sort_dir")
    pairs = []
    if "sort" in args:
        if keys or dirs:
            raise _bad("sort", "cannot be combined with sort_key or sort_dir")
        for item in args["sort"].split(","):
            key, _, direction = item.strip().partition(":")
            pairs.append((key, direction or "desc"))
    else:
        if len(dirs) > 1 and len(dirs) != len(keys):
            raise _bad("sort_dir", "give one, or one per sort_key")
        keys = keys or ["created_at"]
        dirs = dirs * len(keys) if len(dirs) == 1 else dirs or ["desc"] * len(keys)
        pairs = list(zip(keys, dirs))
    for key, direction in pairs:
        if key not in SORT_KEYS:
            raise _bad("sort_key", "must be one of %s" % ", ".join(SORT_KEYS))
        if direction not in ("asc", "desc"):
            raise _bad("sort_dir", "must be asc or desc")
    order = [(key, direction == "desc") for key, direction in pairs]
    return order + [(k, True) for k in ("created_at", "id") if k not in dict(order)]


class Query:
    """The parsed parameters of one list request (400 naming the bad one)."""

    def __init__(self, args):
        for name, value in args.items(multi=True):
            if "\x00" in name or "\x00" in value:
                raise _bad(name.replace("\x00", "")[:64] or "(query)",
                           "must not contain NUL characters")
        self.args = args
        self.limit = DEFAULT_LIMIT
        if "limit" in args:
            self.limit = min(_integer("limit", args["limit"]), MAX_LIMIT)
        self.marker = args.get("marker")
        self.order = _sort(args)
        self.visibility = args.get("visibility")
        if self.visibility not in (None, "all") + db_images.VISIBILITIES:
            raise _bad("visibility", "must be one of public, private, shared, community, all")
        if args.get("member_status", "accepted") not in MEMBER_STATUSES:
            raise _bad("member_status", "must be one of %s" % ", ".join(MEMBER_STATUSES))
        self.conditions = self._conditions(args)
        self.tags = args.getlist("tag")
        self.properties = {k: v for k, v in args.items() if k not in KNOWN}

    @staticmethod
    def _conditions(args):
        conditions = []
        for name in MULTI_VALUED:
            if name in args:
                values = _values(name, args[name])
                if name == "status" and not set(values) <= set(db_images.STATUSES):
                    raise _bad("status", "must be one of %s" % ", ".join(db_images.STATUSES))
                conditions.append(getattr(Image, name).in_(values))
        if "owner" in args:
            conditions.append(Image.owner == args["owner"])
        for name in ("protected", "os_hidden"):
            if name in args:
                conditions.append(getattr(Image, name).is_(_boolean(name, args[name])))
        if "os_hidden" not in args:
            conditions.append(Image.os_hidden.is_(False))
        if "size_min" in args:
            conditions.append(Image.size >= _integer("size_min", args["size_min"]))
        if "size_max" in args:
            conditions.append(Image.size <= _integer("size_max", args["size_max"]))
        return conditions

    def fetch(self, s, ctxt):
        """(the page of images, the marker of the next page or None)."""
        rows = db_images.query(s, ctxt, self.visibility, self.conditions, self.tags,
                               self.properties)
        rows.sort(key=functools.cmp_to_key(self._compare))
        start = 0
        if self.marker is not None:
            ids = [r.id for r in rows]
            if self.marker not in ids:
                raise _bad("marker", "no image %s among those listed" % self.marker[:64])
            start = ids.index(self.marker) + 1
        page = rows[start:start + self.limit]
        full = self.limit > 0 and len(page) == self.limit
        return page, (page[-1].id if full else None)

    def _compare(self, a, b):
        for key, descending in self.order:
            x, y = getattr(a, key), getattr(b, key)
            if x == y:
                continue
            # None sorts first ascending, as on PostgreSQL with NULLS FIRST.
            less = x is None or (y is not None and x < y)
            return (1 if less else -1) if descending else (-1 if less else 1)
        return 0
