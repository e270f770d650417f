"""Keystone v3 bodies: version documents, tokens, projects.

Times are Keystone's ``2026-01-02T03:04:05.000000Z``: tempest accepts only
that form (or without fraction), gophercloud needs the ``Z``. Tokens are
issued on whole seconds, so what is stored is what is shown."""
from nova_api.openstack import catalog, urls

DOMAIN = {"id": "default", "name": "Default"}
MEDIA_TYPES = [{"base": "application/json",
                "type": "application/vnd.openstack.identity-v3+json"}]


def time(value):
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if value is not None else None


def version():
    return {"id": "v3.14", "status": "stable", "updated": "2020-04-07T00:00:00Z",
            "links": [urls.link("self", "identity/v3", trailing_slash=True)],
            "media-types": MEDIA_TYPES}


def role(name):
    return {"id": catalog.stable_id("role", name), "name": name}


def token(token, user, project, roles, with_catalog=True):
    """Keystone's token body; ``roles`` highest first, implied ones included."""
    audit_ids = [token.audit_id] if token.audit_id else []
    if token.audit_chain_id:
        audit_ids.append(token.audit_chain_id)
    body = {
        "methods": token.methods.split(",") if token.methods else ["token"],
        "audit_ids": audit_ids,
        "expires_at": time(token.expires_at),
        "issued_at": time(token.created_at),
        "user": {"id": user.id, "name": user.name, "domain": dict(DOMAIN),
                 "password_expires_at": None},
        "project": {"id": project.id, "name": project.name, "domain": dict(DOMAIN)},
        "roles": [role(r) for r in roles],
        "is_domain": False,
    }
    if with_catalog:
        body["catalog"] = catalog.catalog()
    return {"token": body}


def project(p):
    return {"id": p.id, "name": p.name, "domain_id": DOMAIN["id"], "description": "",
            "enabled": True, "is_domain": False, "parent_id": DOMAIN["id"], "tags": [],
            "options": {}, "links": {"self": urls.url("identity/v3/projects", p.id)}}


def user(u):
    return {"id": u.id, "name": u.name, "domain_id": DOMAIN["id"], "enabled": u.enabled,
            "default_project_id": u.project_id, "password_expires_at": None, "options": {},
            "links": {"self": urls.url("identity/v3/users", u.id)}}


def collection_links(*parts):
    return {"self": urls.url(*parts), "previous": None, "next": None}
