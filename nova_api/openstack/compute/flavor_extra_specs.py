"""A flavor's extra specs, ``{"extra_specs": {key: value}}``: anyone who may
see the flavor reads them (``openstack flavor show`` does), admins write.
Values are stored as text, as Nova does (``true`` becomes ``"True"``).

- POST sets the given keys (the others stay) and answers them;
- PUT ``/{key}`` takes exactly ``{key: value}``, that key;
- DELETE ``/{key}``: 200 with no body (Nova's code)."""
from flask import current_app, jsonify

from common import exception
from common.db import flavors as db_flavors
from nova_api import auth, validation
from nova_api.openstack.compute import flavors, resource

bp = resource.blueprint("compute_flavor_extra_specs", __name__)

KEY_PATTERN = "^[a-zA-Z0-9-_:. ]{1,255}$"
VALUE = {"type": ["string", "number", "boolean"], "minLength": 0, "maxLength": 255}
SPECS = {"type": "object", "patternProperties": {KEY_PATTERN: VALUE},
         "additionalProperties": False}
CREATE_SCHEMA = {"type": "object", "properties": {"extra_specs": SPECS},
                 "required": ["extra_specs"], "additionalProperties": False}
UPDATE_SCHEMA = dict(SPECS, minProperties=1, maxProperties=1)


def _db():
    return current_app.extensions["mininova"]["db"]


def _checked(specs, field):
    """{key: text}: Nova's str() of each value (booleans as "True"/"False")."""
    values = {}
    for key, value in specs.items():
        text = str(value)
        if len(text) > 255:
            raise exception.ValidationError(field="%s.%s" % (field, key[:64]),
                                            reason="must be at most 255 characters long")
        values[key] = text
    return values


@bp.get("/flavors/<flavor_id>/os-extra_specs")
def index(flavor_id):
    with _db().transaction() as s:
        flavors.visible(s, flavor_id)
        return jsonify({"extra_specs": db_flavors.extra_specs(s, flavor_id)})


@bp.get("/flavors/<flavor_id>/os-extra_specs/<key>")
def show(flavor_id, key):
    with _db().transaction() as s:
        flavors.visible(s, flavor_id)
        specs = db_flavors.extra_specs(s, flavor_id)
    if key not in specs:
        raise exception.FlavorExtraSpecNotFound(flavor=flavor_id, key=key)
    return jsonify({key: specs[key]})


@bp.post("/flavors/<flavor_id>/os-extra_specs")
@auth.admin_only
def create(flavor_id):
    specs = _checked(validation.json_body(CREATE_SCHEMA)["extra_specs"], "extra_specs")
    with _db().transaction() as s:
        db_flavors.get(s, flavor_id)
        db_flavors.extra_specs_set(s, flavor_id, specs)
    return jsonify({"extra_specs": specs})


@bp.put("/flavors/<flavor_id>/os-extra_specs/<key>")
@auth.admin_only
def update(flavor_id, key):
    specs = _checked(validation.json_body(UPDATE_SCHEMA), "(body)")
    if key not in specs:
        raise exception.ValidationError(field=key[:64], reason="Request body and URI mismatch")
    with _db().transaction() as s:
        db_flavors.get(s, flavor_id)
        db_flavors.extra_specs_set(s, flavor_id, specs)
    return jsonify(specs)


@bp.delete("/flavors/<flavor_id>/os-extra_specs/<key>")
@auth.admin_only
def delete(flavor_id, key):
    with _db().transaction() as s:
        db_flavors.get(s, flavor_id)
        db_flavors.extra_spec_delete(s, flavor_id, key)
    return "", 200
