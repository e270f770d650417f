"""Flavors and images as the API process remembers them.

Creating a VM needs its flavor's sizes and its image's id and minimums;
showing VMs needs the names of both. Both tables are small and change
rarely, so they are remembered here rather than read for every request (a
list would otherwise read both whole tables).

- Flavors cannot be changed, only created and deleted (by admins): the
  table is read again when a ref or id is not in it (a new flavor is found
  at once), after ``image_ttl`` seconds (a flavor deleted through another
  API process is refused at the latest then) and at once after a delete
  through this one (``forget_flavors``).
- Images can be uploaded and deleted (``deleted_at``): what a ref resolves to
  is kept ``image_ttl`` seconds (default IMAGE_TTL). A ref not known is always
  looked up, so a new image is found at once; a deleted image is refused at
  the latest ``image_ttl`` seconds after its deletion (a VM created in that
  window fails its build at the image download and goes to ERROR with a
  fault naming the image). There is no API to delete images; an operator
  doing it in the database is the case this bounds.
- Names for VM views come from one {id: name} map per table, read again after
  ``image_ttl`` or when a VM shows an id not in it (at most once a second).

Entries are immutable tuples, safe to share between the API's threads.
"""
import collections
import threading
import time

from common import exception
from common.db import api as db_api
from common.db import flavors as db_flavors

IMAGE_TTL = 5.0
# A VM referring to an id the maps lack reloads them at most this often (a
# VM row may name an image that no longer exists at all).
MISS_RELOAD_INTERVAL = 1.0
_MAX_IMAGE_REFS = 10000

FlavorInfo = collections.namedtuple("FlavorInfo", "id name vcpus memory_mb root_gb is_public")
ImageInfo = collections.namedtuple("ImageInfo",
                                   "id name min_ram min_disk owner visibility status")


class _Flavors:
    """The whole flavor table: {id: FlavorInfo} and {name: FlavorInfo}."""

    def __init__(self, rows, loaded_at):
        self.by_id = {f.id: f for f in rows}
        self.by_name = {f.name: f for f in rows}
        self.names = {f.id: f.name for f in rows}
        self.loaded_at = loaded_at


class Lookups:
    def __init__(self, db, image_ttl=IMAGE_TTL, clock=time.monotonic):
        self.db = db
        self.image_ttl = image_ttl
        self.clock = clock
        self._lock = threading.Lock()
        self._flavors = None
        self._images = {}            # ref -> (expires, ImageInfo)
        self._image_names = None     # (loaded at, {id: name or None})

    # -- flavors --------------------------------------------------------------

    def _load_flavors(self):
        with self.db.transaction() as s:
            rows = [FlavorInfo(f.id, f.name, f.vcpus, f.memory_mb, f.root_gb, f.is_public)
                    for f in db_api.flavor_list(s)]
        self._flavors = _Flavors(rows, self.clock())
        return self._flavors

    def flavor(self, ref, project_id=None, is_admin=False):
        """The flavor with id or else name ``ref`` (as ``db_api.flavor_get``);
        FlavorNotFound (404) if there is none, or if it is private and the
        caller is neither an admin nor of a project it is shared with (the
        access list is read each time: it changes without a reload)."""
        found = self._flavor(ref)
        if not found.is_public and not is_admin:
            with self.db.transaction() as s:
                if project_id not in db_flavors.access_list(s, found.id):
                    raise exception.FlavorNotFound(flavor=ref)
        return found

    def _flavor(self, ref):
        ref = str(ref)
        table = self._flavors
        if table is not None and self.clock() - table.loaded_at >= self.image_ttl:
            table = None
        found = table and (table.by_id.get(ref) or table.by_name.get(ref))
        if not found:  # not known yet: maybe a new flavor
            table = self._load_flavors()
            found = table.by_id.get(ref) or table.by_name.get(ref)
        if not found:
            raise exception.FlavorNotFound(flavor=ref)
        return found

    def forget_flavors(self):
        """Read the flavor table again at the next lookup (one was deleted)."""
        self._flavors = None

    def flavor_names(self, ids=()):
        """{flavor id: name}; read again if one of ``ids`` is not in it."""
        table = self._flavors or self._load_flavors()
        if (any(i not in table.names for i in ids)
                and self.clock() - table.loaded_at >= MISS_RELOAD_INTERVAL):
            table = self._load_flavors()
        return table.names

    # -- images ---------------------------------------------------------------

    def image(self, ref, ctxt=None):
        """The live image with id or else name ``ref`` among those ``ctxt``
        may see (as ``db_api.image_get``), at most ``image_ttl`` seconds old
        (kept per viewer); ImageNotFound (404) if none, 409 if the name is
        ambiguous. Only active images are kept: one being uploaded is seen
        active at once."""
        ref = str(ref)
        key = (ref,) if ctxt is None else (ref, ctxt.project_id, ctxt.is_admin)
        now = self.clock()
        hit = self._images.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        with self.db.transaction() as s:
            image = db_api.image_get(s, ref, ctxt)
            info = ImageInfo(image.id, image.name, image.min_ram, image.min_disk, image.owner,
                             image.visibility, image.status)
        if info.status != "active":
            return info
        with self._lock:
            if len(self._images) >= _MAX_IMAGE_REFS:
                self._images.clear()
            self._images[key] = (now + self.image_ttl, info)
        return info

    def image_names(self, ids=()):
        """{image id: name, None for a deleted image}, at most ``image_ttl``
        seconds old; read again if one of ``ids`` is not in it."""
        now = self.clock()
        cached = self._image_names
        if cached is not None:
            loaded_at, names = cached
            fresh = now - loaded_at < self.image_ttl
            missing = any(i not in names for i in ids)
            if fresh and not (missing and now - loaded_at >= MISS_RELOAD_INTERVAL):
                return names
        with self.db.transaction() as s:
            names = db_api.image_names(s)
        self._image_names = (now, names)
        return names
