"""Pieces of every compute body: links and times.

Times (§2.5 of the spec, what the clients parse):
- ``isotime``: ``2026-01-02T03:04:05Z`` (server ``created``/``updated``,
  fault ``created``): gophercloud decodes RFC 3339, which needs the ``Z``;
- ``naive_isotime``: ``2026-01-02T03:04:05.123456``, no zone (``launched_at``,
  instance actions and events, keypairs, services): gophercloud's
  ``JSONRFC3339MilliNoZ`` fails on a ``Z``."""
from nova_api.openstack import urls
from nova_api.openstack.compute import resource


def isotime(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ") if dt is not None else None


def naive_isotime(dt):
    return dt.isoformat(timespec="microseconds") if dt is not None else None


def links(*parts):
    """``[self, bookmark]`` of a resource, e.g. ``links("servers", id)``."""
    return urls.resource_links("compute/v2.1", "compute", *parts,
                               project_id=resource.url_project_id())


def bookmark(*parts):
    """``[bookmark]`` alone, as in a server's image and flavor."""
    return [links(*parts)[1]]


def collection_url(*parts):
    """The absolute URL of a collection under the versioned root (with the
    URL's project id when it had one)."""
    project = resource.url_project_id()
    return urls.url("compute/v2.1", *((project,) if project else ()), *parts)
