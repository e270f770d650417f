"""The service catalog: identity, compute and image, each with a public,
an internal and an admin endpoint at the same URL in region RegionOne.
Only what is implemented is listed: a client that finds e.g. ``network``
calls it (openstack quota show does, and fails on the 404).

Ids are derived from what they name, so they are the same in every token
and in every API process."""
import uuid

from nova_api.openstack import urls

REGION = "RegionOne"
INTERFACES = ("public", "internal", "admin")
# (type, name, path of the endpoint below the base URL)
SERVICES = (
    ("identity", "keystone", "identity"),
    ("compute", "nova", "compute/v2.1"),
    ("image", "glance", "image"),
)
_NAMESPACE = uuid.UUID("5b0c3f4e-8a4e-4d8e-9f62-6d696e696e76")


def stable_id(*parts):
    """A hex id derived from ``parts`` (the same wherever it is computed)."""
    return uuid.uuid5(_NAMESPACE, "/".join(parts)).hex


def endpoint(service_type):
    """The URL of a service, e.g. ``{base}/compute/v2.1``."""
    for kind, _name, path in SERVICES:
        if kind == service_type:
            return urls.url(path)
    raise KeyError(service_type)


def catalog():
    """Keystone v3's ``catalog`` list (in tokens and GET /v3/auth/catalog)."""
    entries = []
    for kind, name, path in SERVICES:
        url = urls.url(path)
        entries.append({
            "type": kind, "name": name, "id": stable_id("service", kind),
            "endpoints": [{"id": stable_id("endpoint", kind, interface),
                           "interface": interface, "region": REGION, "region_id": REGION,
                           "url": url} for interface in INTERFACES]})
    return entries
