"""The public base URL and absolute links, for every OpenStack surface.

Clients take the links they are given as the place to send the next request
(keystoneauth makes a version document's self link the service's endpoint),
so every ``href`` is absolute and built from one base: ``[api]
public_endpoint``, or else the request's own scheme, Host and script root
(what the client used to get here)."""
from flask import current_app, g, request

from common import exception


def base():
    """The public base URL, without a trailing slash, e.g.
    ``http://192.168.56.10:8774``; computed once per request."""
    cached = g.get("openstack_base")
    if cached is None:
        configured = current_app.extensions["mininova"]["conf"].api.public_endpoint
        if configured:
            cached = configured.rstrip("/")
        else:
            # Werkzeug leaves the host empty when the header holds characters
            # no host name has: no link can be built on it.
            if not request.host:
                raise exception.ValidationError(
                    field="Host header", reason="is missing or not a host name (an operator "
                    "can set [api] public_endpoint instead)")
            cached = "%s://%s%s" % (request.scheme, request.host, request.script_root)
        g.openstack_base = cached
    return cached


def base_or_none():
    """``base()``, or None where it cannot be built (for error responses,
    which must not fail themselves)."""
    try:
        return base()
    except exception.MininovaException:
        return None


def url(*parts):
    """``{base}/part/part...``; each part may hold slashes of its own, e.g.
    ``url("compute/v2.1", "servers", server_id)``."""
    return "/".join([base()] + [str(p).strip("/") for p in parts if str(p).strip("/")])


def link(rel, *parts, trailing_slash=False):
    href = url(*parts)
    return {"rel": rel, "href": href + "/" if trailing_slash else href}


def resource_links(versioned_root, bookmark_root, *parts, project_id=None):
    """Nova's pair of links to a resource: ``self`` under the versioned root,
    ``bookmark`` under the unversioned one, with the project id in both when
    the request URL had it (``resource_links("compute/v2.1", "compute",
    "servers", id)``)."""
    project = (project_id,) if project_id else ()
    return [{"rel": "self", "href": url(versioned_root, *project, *parts)},
            {"rel": "bookmark", "href": url(bookmark_root, *project, *parts)}]
