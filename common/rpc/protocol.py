"""The wire format: JSON text that a person can read in the RabbitMQ UI.

Request: ``{"version": "1.0", "method": "...", "args": {...}, "context": {...},
"sender": "scheduler@host1"}``.
Reply:   ``{"result": ...}`` or ``{"failure": {"class", "message", "kwargs"}}``,
plus ``"sender"``.

``sender`` (service@host, set once per process with ``set_sender``) is for
people and ``mininova trace``: readers never require it and ignore fields
they do not know, so old and new daemons mix.

Transports move these texts without looking inside; only this module (used
by the client and the server) knows the fields, so both transports behave
the same.
"""
import json
import math
import re

from common import context
from common import exception

CONTENT_TYPE = "application/json"
_VERSION_RE = re.compile(r"^(\d+)\.(\d+)$")
_LOGGED_BODY_CHARS = 500
_sender = None  # "service@host" of this process, stamped on what it sends


def parse_version(text):
    """"X.Y" -> (X, Y); ValueError otherwise."""
    match = _VERSION_RE.match(text) if isinstance(text, str) else None
    if not match:
        raise ValueError("version must look like '1.0', got %r" % (text,))
    return int(match.group(1)), int(match.group(2))


def version_compatible(server_version, message_version):
    """A server at X.Y handles X.0 .. X.Y: minor bumps only add things."""
    server_major, server_minor = parse_version(server_version)
    major, minor = parse_version(message_version)
    return major == server_major and minor <= server_minor


def check_serializable(value, path="args"):
    """Raise TypeError unless ``value`` round-trips through JSON unchanged.

    ``json.dumps`` alone would quietly turn tuples into lists and int keys
    into strings, or emit NaN (not JSON); a handler would then see something
    else than the caller sent. Failing at cast/call time shows the bug where
    it is.
    """
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError("%s: %r is not valid JSON" % (path, value))
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            check_serializable(item, "%s[%d]" % (path, i))
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError("%s: key %r is not a string" % (path, key))
            check_serializable(item, "%s[%r]" % (path, key))
        return
    raise TypeError("%s: %s is not JSON-serializable; pass plain dict/list/str/"
                    "int/float/bool/None" % (path, type(value).__name__))


def set_sender(service, host):
    """Name this process in every message it sends from now on: "service@host"."""
    global _sender
    _sender = "%s@%s" % (service, host) if service and host else (service or host or None)


def _dumps(obj):
    if _sender is not None:
        obj["sender"] = _sender
    return json.dumps(obj, ensure_ascii=False, allow_nan=False)


def encode_request(ctxt, method, args, version):
    if not isinstance(ctxt, context.RequestContext):
        raise TypeError("ctxt must be a RequestContext, got %s" % type(ctxt).__name__)
    if not isinstance(method, str) or not method:
        raise TypeError("method must be a non-empty string")
    check_serializable(args)
    return _dumps({"version": version, "method": method, "args": args,
                   "context": ctxt.to_dict()})


def decode_request(raw):
    """Bytes/str -> request dict with all fields checked; MalformedMessage otherwise."""
    try:
        if isinstance(raw, (bytes, bytearray)):
            raw = raw.decode("utf-8")
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise exception.MalformedMessage("body is not JSON: %s" % exc) from None
    if not isinstance(body, dict):
        raise exception.MalformedMessage("body is not a JSON object")
    method, args = body.get("method"), body.get("args")
    ctxt, version = body.get("context"), body.get("version")
    if not isinstance(method, str) or not method:
        raise exception.MalformedMessage("missing or invalid 'method'")
    if not isinstance(args, dict):
        raise exception.MalformedMessage("missing or invalid 'args' (must be an object)")
    if not isinstance(ctxt, dict):
        raise exception.MalformedMessage("missing or invalid 'context' (must be an object)")
    _check_context(ctxt)
    try:
        parse_version(version)
    except ValueError as exc:
        raise exception.MalformedMessage(str(exc)) from None
    return body


def _check_context(ctxt):
    """The fields ``RequestContext.from_dict`` reads must have its types."""
    for field in ("request_id", "project_id", "user_id"):
        value = ctxt.get(field)
        if value is not None and not isinstance(value, str):
            raise exception.MalformedMessage("invalid context field %r (must be a string)"
                                             % field)
    roles = ctxt.get("roles")
    if roles is not None and not (isinstance(roles, list)
                                  and all(isinstance(r, str) for r in roles)):
        raise exception.MalformedMessage("invalid context field 'roles' (must be a list "
                                         "of strings)")
    if ctxt.get("is_admin") is not None and not isinstance(ctxt.get("is_admin"), bool):
        raise exception.MalformedMessage("invalid context field 'is_admin' (must be a boolean)")


def encode_result(result):
    check_serializable(result, "result")
    return _dumps({"result": result})


def encode_failure(exc):
    """Describe an exception; MininovaException kwargs travel when JSON-safe."""
    kwargs = getattr(exc, "kwargs", None) if isinstance(exc, exception.MininovaException) else None
    try:
        check_serializable(kwargs or {})
    except (TypeError, RecursionError):
        kwargs = None
    return _dumps({"failure": {"class": type(exc).__name__, "message": str(exc),
                               "kwargs": kwargs or {}}})


def decode_reply(raw):
    """Return the result, or raise the remote failure as a local exception.

    Only the classes of ``common.exception`` are re-created (looked up by
    name with ``exception.by_name``), whatever this process imported, and a
    reply can never make us instantiate any other class; anything else
    becomes ``RemoteError``.
    """
    try:
        if isinstance(raw, (bytes, bytearray)):
            raw = raw.decode("utf-8")
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise exception.RemoteError(exc_type="MalformedReply", value=str(exc)) from None
    if isinstance(body, dict) and "result" in body:
        return body["result"]
    failure = body.get("failure") if isinstance(body, dict) else None
    if not isinstance(failure, dict):
        raise exception.RemoteError(exc_type="MalformedReply", value=truncate(raw))
    name, message = str(failure.get("class")), str(failure.get("message", ""))
    cls = exception.by_name(name)
    if cls is None:
        raise exception.RemoteError(exc_type=name, value=message)
    exc = cls(message)
    if isinstance(failure.get("kwargs"), dict):
        exc.kwargs = failure["kwargs"]
    raise exc


def truncate(raw):
    """A loggable, bounded rendering of a message body."""
    if isinstance(raw, (bytes, bytearray)):
        raw = raw.decode("utf-8", errors="replace")
    text = str(raw)
    if len(text) > _LOGGED_BODY_CHARS:
        text = text[:_LOGGED_BODY_CHARS] + "...(%d chars)" % len(text)
    return repr(text)

