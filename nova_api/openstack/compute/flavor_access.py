"""Who may use a private flavor (admin only, as Nova's policy): the access
list and the ``addTenantAccess``/``removeTenantAccess`` actions, each
answered with the whole list ``{"flavor_access": [{flavor_id, tenant_id}]}``.
A public flavor has no list (404); a project must exist to be added (400)."""
from flask import current_app, jsonify

from common import exception
from common.db import flavors as db_flavors
from nova_api import auth, validation
from nova_api.openstack.compute import resource

bp = resource.blueprint("compute_flavor_access", __name__)

_TENANT = {"type": "object",
           "properties": {"tenant": {"type": "string", "minLength": 1, "maxLength": 255,
                                     "pattern": validation.REF_PATTERN}},
           "required": ["tenant"], "additionalProperties": False}
ACTION_SCHEMA = {
    "type": "object",
    "properties": {"addTenantAccess": _TENANT, "removeTenantAccess": _TENANT},
    "minProperties": 1, "maxProperties": 1, "additionalProperties": False,
}


def _db():
    return current_app.extensions["mininova"]["db"]


def _access(s, flavor_id):
    return {"flavor_access": [{"flavor_id": flavor_id, "tenant_id": project}
                              for project in db_flavors.access_list(s, flavor_id)]}


@bp.get("/flavors/<flavor_id>/os-flavor-access")
@auth.admin_only
def index(flavor_id):
    with _db().transaction() as s:
        if db_flavors.get(s, flavor_id).is_public:
            raise exception.NotFound("Access list not available for public flavors.")
        return jsonify(_access(s, flavor_id))


@bp.post("/flavors/<flavor_id>/action")
@auth.admin_only
def action(flavor_id):
    body = validation.json_body(ACTION_SCHEMA)
    (name, args), = body.items()
    with _db().transaction() as s:
        db_flavors.get(s, flavor_id)
        if name == "addTenantAccess":
            try:
                db_flavors.access_add(s, flavor_id, args["tenant"])
            except exception.ProjectNotFound:
                raise exception.ValidationError(field="addTenantAccess.tenant",
                                                reason="is not the id of a project") from None
        else:
            db_flavors.access_remove(s, flavor_id, args["tenant"])
        return jsonify(_access(s, flavor_id))
