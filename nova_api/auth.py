"""Who is calling: ``X-Auth-Token`` -> user, project and role.

Every call but version discovery and the API description needs a token.
Lookups are cached briefly in the process (a revoked or expired token stops
working within TOKEN_CACHE_SECONDS) so a request costs no extra DB round trip."""
import functools
import threading
import time

from flask import g

from common import exception
from common.db import auth as db_auth

PUBLIC = {("GET", "/"), ("GET", "/v1"), ("GET", "/v1/openapi.json"), ("GET", "/metrics")}
TOKEN_CACHE_SECONDS = 10.0


class TokenCache:
    def __init__(self, db):
        self.db = db
        self._entries = {}  # sha256 -> (expires monotonic, identity)
        self._lock = threading.Lock()

    def identity(self, secret):
        key = db_auth.token_hash(secret)
        now = time.monotonic()
        with self._lock:
            hit = self._entries.get(key)
        if hit and hit[0] > now:
            return hit[1]
        with self.db.transaction() as s:
            identity = db_auth.token_lookup(s, secret)
        with self._lock:
            if len(self._entries) > 10000:
                self._entries.clear()
            self._entries[key] = (now + TOKEN_CACHE_SECONDS, identity)
        return identity


def authenticate(request, ctxt, cache):
    if (request.method, request.path.rstrip("/") or "/") in PUBLIC:
        return
    secret = request.headers.get("X-Auth-Token")
    if not secret:
        raise db_auth.Unauthorized(reason="send a token in the X-Auth-Token header")
    if len(secret) > 256:
        raise db_auth.Unauthorized(reason="invalid token")
    ctxt.user_id, ctxt.project_id, role = cache.identity(secret)
    ctxt.roles = [role]
    ctxt.is_admin = role == "admin"


def admin_only(view):
    """For operator endpoints: members get 403."""
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        if not g.context.is_admin:
            raise exception.Forbidden("This needs the admin role.")
        return view(*args, **kwargs)
    return wrapper
