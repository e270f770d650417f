"""Request bodies: JSON only, size-limited, validated by a JSON schema whose
errors name the field."""
import json

import jsonschema
from flask import current_app, request

from common import exception

NAME_PATTERN = "^[A-Za-z0-9._-]{1,63}$"
NAME = {"type": "string", "pattern": NAME_PATTERN, "minLength": 1, "maxLength": 63}
REF = {"type": "string", "minLength": 1, "maxLength": 255}


def json_body(schema):
    """The request's JSON body, validated against ``schema``."""
    limit = current_app.config["MAX_BODY_BYTES"]
    if request.content_length is not None and request.content_length > limit:
        raise exception.PayloadTooLarge(limit=limit)
    mimetype = request.mimetype or ""
    if mimetype != "application/json":
        raise exception.UnsupportedMediaType(content_type=mimetype or "(none)")
    raw = request.get_data(cache=False)
    if len(raw) > limit:
        raise exception.PayloadTooLarge(limit=limit)
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise exception.Invalid(reason="malformed JSON body: %s" % e) from e
    validate(body, schema)
    return body


def validate(body, schema):
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
    if not errors:
        return
    err = errors[0]
    path = ".".join(str(p) for p in err.absolute_path)
    if err.validator == "required":
        missing = err.message.split("'")[1] if "'" in err.message else err.message
        field = ".".join(filter(None, [path, missing]))
        raise exception.ValidationError(field=field, reason="is required")
    if err.validator == "additionalProperties":
        raise exception.ValidationError(field=path or "(body)", reason=err.message)
    if err.validator == "pattern":
        reason = "must be 1-63 characters of A-Z a-z 0-9 . _ -"
    elif err.validator == "type":
        reason = "must be of type %s" % err.validator_value
    else:
        reason = err.message
    raise exception.ValidationError(field=path or "(body)", reason=reason)
