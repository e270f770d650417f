"""Request bodies: JSON only, size-limited, validated by a JSON schema whose
errors name the field. Path and query parameters are checked here too.

The schemas are also the API description (``nova_api.openapi`` imports them),
so they must mean the same to this module as to an OpenAPI client: patterns
follow ECMA-262, where ``$`` matches only at the very end of the string (with
Python's ``re.search`` it would also match before a trailing newline, letting
``"web1\\n"`` pass as a name)."""
import collections
import functools
import json
import re
import threading

import jsonschema
from flask import current_app, request

from common import exception

# Names are also path segments (GET /v1/vms/<name>), where "." and ".." would
# be resolved away by clients: those two are not names.
_DOTS = {"enum": [".", ".."]}
NAME_PATTERN = "^[A-Za-z0-9._-]{1,63}$"
NAME = {"type": "string", "pattern": NAME_PATTERN, "minLength": 1, "maxLength": 63,
        "not": _DOTS}
LONG_NAME_PATTERN = "^[A-Za-z0-9._-]{1,255}$"
LONG_NAME = {"type": "string", "pattern": LONG_NAME_PATTERN, "not": _DOTS}
# A reference to an existing image, flavor or group, by name or id: any text
# but control characters (NUL cannot even be stored).
REF_PATTERN = "^[^\\x00-\\x1f\\x7f]+$"
REF = {"type": "string", "minLength": 1, "maxLength": 255, "pattern": REF_PATTERN}
# Free text stored as is (e.g. a reason): everything but NUL.
TEXT_PATTERN = "^[^\\x00]*$"
# A path segment (VM, image, flavor, group, host or project ref): anything
# that can be compared with stored names, i.e. no NUL.
PATH_PARAM_PATTERN = "^[^\\x00]+$"

_PATTERN_REASONS = {
    NAME_PATTERN: "must be 1-63 characters of A-Z a-z 0-9 . _ -",
    LONG_NAME_PATTERN: "must be 1-255 characters of A-Z a-z 0-9 . _ -",
    REF_PATTERN: "must not contain control characters",
    TEXT_PATTERN: "must not contain NUL characters",
    PATH_PARAM_PATTERN: "must not contain NUL characters",
}
_INT = re.compile(r"^-?[0-9]{1,18}\Z")


@functools.lru_cache(maxsize=256)
def _ecma_regex(pattern):
    """``pattern`` compiled so that an unescaped ``$`` outside a character
    class matches only at the end of the string, as in ECMA-262."""
    out, i, in_class = [], 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            out.append(pattern[i:i + 2])
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
            if pattern[i + 1:i + 2] == "]":  # "[]...]": a literal ']' first
                out.append("[]")
                i += 2
                continue
        elif c == "$":
            c = r"\Z"
        out.append(c)
        i += 1
    return re.compile("".join(out))


def _pattern(validator, patrn, instance, schema):
    if validator.is_type(instance, "string") and not _ecma_regex(patrn).search(instance):
        yield jsonschema.ValidationError("does not match %r" % patrn)


Validator = jsonschema.validators.extend(jsonschema.Draft202012Validator,
                                         {"pattern": _pattern})


def _read_limited(stream, limit):
    """At most ``limit`` + 1 bytes of ``stream``: enough to tell it is too
    large without buffering a huge (e.g. chunked, length-less) body."""
    chunks, size = [], 0
    while size <= limit:
        chunk = stream.read(limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _surrogate_path(body):
    """Path of the first string (value or member name) holding a lone
    surrogate, which json.loads lets through from an escape ("\\ud800"):
    such text is no Unicode, and neither the database nor a log can take it.
    None if there is none. Iterative: the body may be nested deeply."""
    stack = [(body, "")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                return path
        elif isinstance(value, dict):
            for key, item in value.items():
                if _SURROGATE.search(key):
                    return path
                stack.append((item, ".".join(filter(None, [path, key]))))
        elif isinstance(value, list):
            stack.extend((item, ".".join(filter(None, [path, str(i)])))
                         for i, item in enumerate(value))
    return None


def json_body(schema, media_types=("application/json",)):
    """The request's JSON body, validated against ``schema``; 415 unless it
    comes as one of ``media_types``."""
    limit = current_app.config["MAX_BODY_BYTES"]
    if request.content_length is not None and request.content_length > limit:
        raise exception.PayloadTooLarge(limit=limit)
    mimetype = request.mimetype or ""
    if mimetype not in media_types:
        raise exception.UnsupportedMediaType(
            "Unsupported content type '%s'; use %s." % (mimetype[:100] or "(none)",
                                                         media_types[0]))
    raw = _read_limited(request.stream, limit)
    if len(raw) > limit:
        raise exception.PayloadTooLarge(limit=limit)
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise exception.Invalid(reason="malformed JSON body: %s" % e) from e
    except RecursionError as e:
        raise exception.Invalid(reason="malformed JSON body: nested too deeply") from e
    bad = _surrogate_path(body)
    if bad is not None:
        raise exception.ValidationError(field=bad or "(body)",
                                        reason="holds a lone surrogate (no Unicode text)")
    validate(body, schema)
    return body


def _reason(err):
    """Why ``err`` failed, without echoing the (possibly huge or hostile) value."""
    kind, value = err.validator, err.validator_value
    if kind == "pattern":
        return _PATTERN_REASONS.get(value, "must match the pattern %s" % value)
    if kind == "type":
        return "must be of type %s" % (" or ".join(value) if isinstance(value, list) else value)
    if kind == "enum":
        return "must be one of %s" % ", ".join(json.dumps(v) for v in value)
    if kind == "minLength":
        return "must be at least %d characters long" % value
    if kind == "maxLength":
        return "must be at most %d characters long" % value
    if kind == "minimum":
        return "must be >= %s" % value
    if kind == "maximum":
        return "must be <= %s" % value
    if kind == "not" and set(value) == {"enum"}:
        return "must not be %s" % " or ".join(json.dumps(v) for v in value["enum"])
    if kind in ("minItems", "maxItems"):
        return "must have %s %d item(s)" % ("at least" if kind == "minItems" else "at most",
                                             value)
    if kind == "uniqueItems":
        return "must not repeat an item"
    if kind in ("minProperties", "maxProperties"):
        return "must have %s %d member(s)" % (
            "at least" if kind == "minProperties" else "at most", value)
    return err.message


_VALIDATORS = collections.OrderedDict()  # id(schema) -> (schema, validator)
_VALIDATORS_LOCK = threading.Lock()


def _validator(schema):
    """A validator of ``schema``, built once per schema (the blueprints'
    schemas are constants; building one costs as much as validating). Keyed
    by identity, holding the schema so that its id cannot be reused while
    cached; the least recently used go past 128 (schemas made per call)."""
    key = id(schema)
    with _VALIDATORS_LOCK:
        hit = _VALIDATORS.get(key)
        if hit is not None and hit[0] is schema:
            _VALIDATORS.move_to_end(key)
            return hit[1]
    validator = Validator(schema)
    with _VALIDATORS_LOCK:
        _VALIDATORS[key] = (schema, validator)
        if len(_VALIDATORS) > 128:
            _VALIDATORS.popitem(last=False)
    return validator


def validate(body, schema, root="(body)"):
    """Raise ValidationError (400) naming the first field of ``body`` that
    ``schema`` rejects (``root`` when it is the whole of it)."""
    try:
        errors = sorted(_validator(schema).iter_errors(body),
                        key=lambda e: [str(p) for p in e.absolute_path])
    except RecursionError as e:
        raise exception.Invalid(reason="request nested too deeply") from e
    if not errors:
        return
    err = errors[0]
    path = ".".join(str(p) for p in err.absolute_path)
    if err.validator == "required":
        missing = err.message.split("'")[1] if "'" in err.message else err.message
        field = ".".join(filter(None, [path, missing]))
        raise exception.ValidationError(field=field, reason="is required")
    if err.validator == "additionalProperties":
        extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
        raise exception.ValidationError(
            field=path or root,
            reason="unexpected member(s): %s" % ", ".join(repr(k)[:80] for k in extra[:5]))
    raise exception.ValidationError(field=path or root, reason=_reason(err))


def query_params(schema):
    """The query string as a dict validated against ``schema`` (an object
    schema): decimal digits become integers where the schema wants one."""
    props = schema.get("properties", {})
    params = {}
    for key, value in request.args.items():
        if props.get(key, {}).get("type") == "integer":
            if not _INT.match(value):
                raise exception.ValidationError(field=key, reason="must be an integer")
            value = int(value)
        params[key] = value
    for key, prop in props.items():
        if key not in params and "default" in prop:
            params[key] = prop["default"]
    validate(params, schema, root="(query)")
    return params


def check_path_params():
    """``before_request`` of blueprints with path parameters: a value that
    cannot be compared with stored names (NUL) is a 400 naming it, not a
    database error."""
    for name, value in (request.view_args or {}).items():
        if isinstance(value, str) and "\x00" in value:
            raise exception.ValidationError(field=name, reason=_PATTERN_REASONS[
                PATH_PARAM_PATTERN])
