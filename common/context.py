"""Request context: who asked, in which project, under which request id.

The current context lives in a ``contextvars.ContextVar`` so that log lines of
every daemon carry the request id of the work they belong to (see
``common.log``). RPC messages carry ``to_dict()`` and servers restore it with
``from_dict()`` before dispatching.
"""
import contextvars
import uuid

_current = contextvars.ContextVar("mininova_context", default=None)


def generate_request_id():
    return "req-" + str(uuid.uuid4())


class RequestContext:
    def __init__(self, request_id=None, project_id=None, user_id=None,
                 roles=None, is_admin=False):
        self.request_id = request_id or generate_request_id()
        self.project_id = project_id
        self.user_id = user_id
        self.roles = list(roles or [])
        self.is_admin = bool(is_admin)

    def to_dict(self):
        return {
            "request_id": self.request_id,
            "project_id": self.project_id,
            "user_id": self.user_id,
            "roles": self.roles,
            "is_admin": self.is_admin,
        }

    @classmethod
    def from_dict(cls, values):
        values = values or {}
        return cls(
            request_id=values.get("request_id"),
            project_id=values.get("project_id"),
            user_id=values.get("user_id"),
            roles=values.get("roles"),
            is_admin=values.get("is_admin", False),
        )

    def __repr__(self):
        return "<RequestContext %s project=%s>" % (self.request_id, self.project_id)


def get_admin_context(request_id=None):
    """A context for work a daemon starts on its own (periodic tasks, start-up)."""
    return RequestContext(request_id=request_id, is_admin=True, roles=["admin"])


def set_current(ctxt):
    """Make ``ctxt`` current; returns a token for ``reset_current``."""
    return _current.set(ctxt)


def reset_current(token):
    _current.reset(token)


def get_current():
    return _current.get()
