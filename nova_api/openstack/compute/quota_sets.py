"""Quotas at 2.1: ``/limits`` (absolute limits and usage), os-quota-sets
(a project's limits, the defaults, the detail with usage; an admin's update
and reset) and os-quota-class-sets (the ``default`` class replaces the
configured defaults of every project without an override).

Members see their own project's quota only (403 for another's); updates
are for admins. Limits arrive as integers or digit strings, -1 unlimited."""
from flask import current_app, g, jsonify, request

from common import exception
from common.db import quota_sets as db_quotas
from nova_api import auth, validation
from nova_api.openstack.compute import params, resource

bp = resource.blueprint("compute_quota_sets", __name__)

_LIMIT = {"type": ["integer", "string"], "pattern": "^-?[0-9]{1,18}$"}
UPDATE_SCHEMA = {
    "type": "object",
    "properties": {"quota_set": {
        "type": "object",
        "properties": dict({r: _LIMIT for r in db_quotas.RESOURCES}, force=params.BOOLEAN),
        "additionalProperties": False,
    }},
    "required": ["quota_set"],
    "additionalProperties": False,
}
CLASS_UPDATE_SCHEMA = {
    "type": "object",
    "properties": {"quota_class_set": {
        "type": "object",
        "properties": {r: _LIMIT for r in db_quotas.RESOURCES},
        "additionalProperties": False,
    }},
    "required": ["quota_class_set"],
    "additionalProperties": False,
}
# Below 2.50 a quota class shows no server group limits.
CLASS_RESOURCES = tuple(r for r in db_quotas.RESOURCES
                        if r not in ("server_groups", "server_group_members"))


def _ext():
    return current_app.extensions["mininova"]


def _configured():
    return _ext()["vm_service"].quota_defaults


def _readable(project_id):
    if project_id != g.context.project_id and not g.context.is_admin:
        raise exception.Forbidden("Only admins can see another project's quota.")


def _limits(body, field):
    return {resource: params.integer("%s.%s" % (field, resource), value, minimum=-1)
            for resource, value in body.items() if resource != "force"}


@bp.get("/limits")
def limits():
    """The caller's project's, or with ``tenant_id`` (admins) another's;
    other parameters (OSC's ``reserved``) are ignored."""
    project_id = request.args.get("tenant_id") or g.context.project_id
    _readable(project_id)
    with _ext()["db"].transaction() as s:
        limit = db_quotas.project_limits(s, project_id, _configured())
        used = db_quotas.usage(s, project_id)
    return jsonify({"limits": {"rate": [], "absolute": {
        "maxTotalInstances": limit["instances"], "maxTotalCores": limit["cores"],
        "maxTotalRAMSize": limit["ram"], "totalInstancesUsed": used["instances"],
        "totalCoresUsed": used["cores"], "totalRAMUsed": used["ram"],
        "maxServerMeta": limit["metadata_items"], "maxImageMeta": limit["metadata_items"],
        "maxPersonality": limit["injected_files"],
        "maxPersonalitySize": limit["injected_file_content_bytes"],
        "maxTotalKeypairs": limit["key_pairs"], "maxSecurityGroups": limit["security_groups"],
        "maxSecurityGroupRules": limit["security_group_rules"],
        "maxTotalFloatingIps": limit["floating_ips"], "totalFloatingIpsUsed": 0,
        "totalSecurityGroupsUsed": 0, "maxServerGroups": limit["server_groups"],
        "maxServerGroupMembers": limit["server_group_members"],
        "totalServerGroupsUsed": used["server_groups"],
    }}})


@bp.get("/os-quota-sets/<tenant_id>")
def show(tenant_id):
    """A project's limits (``user_id`` accepted: limits are per project)."""
    _readable(tenant_id)
    with _ext()["db"].transaction() as s:
        limit = db_quotas.project_limits(s, tenant_id, _configured())
    return jsonify({"quota_set": dict(limit, id=tenant_id)})


@bp.get("/os-quota-sets/<tenant_id>/defaults")
def defaults(tenant_id):
    with _ext()["db"].transaction() as s:
        limit = db_quotas.defaults(s, _configured())
    return jsonify({"quota_set": dict(limit, id=tenant_id)})


@bp.get("/os-quota-sets/<tenant_id>/detail")
def detail(tenant_id):
    _readable(tenant_id)
    with _ext()["db"].transaction() as s:
        limit = db_quotas.project_limits(s, tenant_id, _configured())
        # Key pairs are a user's: those of ``user_id``, else the caller's own.
        user_id = request.args.get("user_id") or (
            g.context.user_id if tenant_id == g.context.project_id else None)
        used = db_quotas.usage(s, tenant_id, user_id)
    body = {r: {"limit": limit[r], "in_use": used[r], "reserved": 0} for r in limit}
    return jsonify({"quota_set": dict(body, id=tenant_id)})


@bp.put("/os-quota-sets/<tenant_id>")
@auth.admin_only
def update(tenant_id):
    """Set some of a project's limits; none may go below what it uses
    unless ``force`` is true. The answer has no ``id`` (Nova's)."""
    if request.args.get("user_id"):
        raise exception.ValidationError(field="user_id", reason="per-user quotas are not "
                                        "supported: limits are per project")
    body = validation.json_body(UPDATE_SCHEMA)["quota_set"]
    force = params.boolean("quota_set.force", body.get("force", False))
    limits = _limits(body, "quota_set")
    with _ext()["db"].transaction() as s:
        used = db_quotas.usage(s, tenant_id)
        for resource, limit in limits.items():
            if not force and 0 <= limit < used[resource]:
                raise exception.ValidationError(
                    field="quota_set.%s" % resource, reason="must be >= what is in use "
                    "(%d), or -1; or send force" % used[resource])
        try:
            db_quotas.project_set(s, tenant_id, limits)
        except exception.ProjectNotFound:
            raise exception.ValidationError(field="tenant_id",
                                            reason="is not the id of a project") from None
        return jsonify({"quota_set": db_quotas.project_limits(s, tenant_id, _configured())})


@bp.delete("/os-quota-sets/<tenant_id>")
@auth.admin_only
def reset(tenant_id):
    with _ext()["db"].transaction() as s:
        db_quotas.project_reset(s, tenant_id)
    return "", 202


def _class_view(limits, class_name=None):
    body = {r: limits[r] for r in CLASS_RESOURCES}
    if class_name is not None:
        body["id"] = class_name
    return {"quota_class_set": body}


@bp.get("/os-quota-class-sets/<class_name>")
@auth.admin_only
def class_show(class_name):
    with _ext()["db"].transaction() as s:
        return jsonify(_class_view(db_quotas.class_limits(s, class_name, _configured()),
                                   class_name))


@bp.put("/os-quota-class-sets/<class_name>")
@auth.admin_only
def class_update(class_name):
    if len(class_name) > 255:
        raise exception.ValidationError(field="quota class name",
                                        reason="must be at most 255 characters long")
    body = validation.json_body(CLASS_UPDATE_SCHEMA)["quota_class_set"]
    with _ext()["db"].transaction() as s:
        db_quotas.class_set(s, class_name, _limits(body, "quota_class_set"))
        return jsonify(_class_view(db_quotas.class_limits(s, class_name, _configured())))
