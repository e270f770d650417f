"""Who is calling: ``X-Auth-Token`` -> user, project and role.

Every call but version discovery, the API description and the views marked
``@public`` (e.g. POST /identity/v3/auth/tokens) needs a token. Roles imply
one another (admin => member => reader); a reader may only read, on every
surface: enforced here, once, for all of them (``@any_role`` exempts a view
whose writes are the caller's own business, like revoking one's own token).

A token's identity is cached in the process (a request then costs no DB round
trip) only where a revocation is heard at once: on PostgreSQL, with a
RevocationListener (common/db/revocations.py) that is connected. An entry is
trusted only while the listener's generation is the one read before the entry
was looked up, so a token revoked (deleted, its user deleted or changed) is
refused from the first request after the NOTIFY reached the API; mininova-
manage's revocations return only after that. Entries also expire after
``[api] token_cache_seconds`` (0: no cache) and never outlive their token's
``expires_at``: the bound when a notification cannot arrive (a cut connection
not noticed yet). Without a listener (SQLite) nothing is cached."""
import datetime
import functools
import threading
import time

from flask import current_app, g

from common import exception
from common.db import auth as db_auth
from common.db.models import utcnow

PUBLIC = {("GET", "/"), ("GET", "/v1"), ("GET", "/v1/openapi.json"), ("GET", "/metrics"),
          ("GET", "/healthcheck"), ("HEAD", "/healthcheck")}
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_ENTRIES = 10000


class TokenCache:
    def __init__(self, db, ttl=0.0, listener=None, clock=time.monotonic):
        """``listener``: something with ``current()`` -> generation or None
        (a RevocationListener); no listener or ``ttl`` 0: no caching."""
        self.db = db
        self.ttl = float(ttl)
        self.listener = listener if self.ttl > 0 else None
        self.clock = clock
        self._entries = {}  # sha256 -> (expires monotonic, generation, identity)
        self._generation = None  # of the entries stored last
        self._lock = threading.Lock()

    def identity(self, secret):
        key = db_auth.token_hash(secret)
        if self.listener is None:
            return self._lookup(secret)[0]
        now = self.clock()
        hit = self._entries.get(key)
        if hit is not None and hit[0] > now and hit[1] == self.listener.current():
            return hit[2]
        # Read before the lookup: a revocation committed after the lookup
        # moves it on, and the entry is born stale (or not stored at all).
        generation = self.listener.current()
        identity, expires_at = self._lookup(secret)
        if generation is not None:
            lifetime = self.ttl
            if expires_at is not None:
                lifetime = min(lifetime, (expires_at - utcnow()) / datetime.timedelta(seconds=1))
            with self._lock:
                # Entries of an older generation can never be trusted again.
                if generation != self._generation or len(self._entries) >= MAX_ENTRIES:
                    self._entries.clear()
                    self._generation = generation
                self._entries[key] = (now + lifetime, generation, identity)
        return identity

    def _lookup(self, secret):
        with self.db.transaction() as s:
            return db_auth.token_lookup_expiring(s, secret)


def public(view):
    """A view anybody may call, without a token."""
    view.public = True
    return view


def any_role(view):
    """A view a reader may call with any method."""
    view.any_role = True
    return view


def authenticate(request, ctxt, cache):
    view = current_app.view_functions.get(request.endpoint) if request.endpoint else None
    if ((request.method, request.path.rstrip("/") or "/") in PUBLIC
            or getattr(view, "public", False)):
        return
    secret = request.headers.get("X-Auth-Token")
    if not secret:
        raise exception.Unauthorized(reason="send a token in the X-Auth-Token header")
    if len(secret) > 256:
        raise exception.Unauthorized(reason="invalid token")
    ctxt.user_id, ctxt.project_id, role = cache.identity(secret)
    ctxt.roles = list(db_auth.IMPLIED_ROLES[role])
    ctxt.is_admin = role == "admin"
    if (role == "reader" and request.method not in READ_METHODS
            and not getattr(view, "any_role", False)):
        raise exception.ReadOnlyRole(method=request.method)


def admin_only(view):
    """For operator endpoints: members get 403."""
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        if not g.context.is_admin:
            raise exception.Forbidden("This needs the admin role.")
        return view(*args, **kwargs)
    return wrapper
