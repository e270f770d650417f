"""Glance v2 bodies: the image (its core attributes, then its extra
properties at the top level, as Glance shows them), the list with its
relative ``first``/``next`` links, and the version document.

Links inside image bodies are relative (``/v2/images/<id>``), as Glance
gives them; the version document's self link is absolute (keystoneauth makes
it the endpoint). Times are ``2026-01-02T03:04:05Z`` (gophercloud needs the
``Z``)."""
import urllib.parse

from nova_api.openstack import urls

HASH_ALGO = "sha512"
VERSION = "v2.16"


def time(value):
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else None


def version():
    return {"id": VERSION, "status": "CURRENT",
            "links": [urls.link("self", "image/v2", trailing_slash=True)]}


def image(img, properties, tags):
    body = dict(properties)
    body.update({
        "id": img.id, "name": img.name, "status": img.status, "visibility": img.visibility,
        "protected": bool(img.protected), "os_hidden": bool(img.os_hidden),
        "disk_format": img.disk_format, "container_format": img.container_format,
        "min_ram": img.min_ram, "min_disk": img.min_disk, "size": img.size,
        "virtual_size": img.virtual_size, "checksum": img.md5,
        "os_hash_algo": HASH_ALGO if img.sha512 else None, "os_hash_value": img.sha512,
        "owner": img.owner, "tags": list(tags), "created_at": time(img.created_at),
        "updated_at": time(img.updated_at or img.created_at),
        "self": "/v2/images/%s" % img.id, "file": "/v2/images/%s/file" % img.id,
        "schema": "/v2/schemas/image"})
    return body


def images(bodies, next_marker, args, limit):
    """The list body; ``next`` when a page was full (``next_marker`` set),
    keeping the request's other query parameters."""
    body = {"images": bodies, "first": "/v2/images", "schema": "/v2/schemas/images"}
    if next_marker is not None:
        query = [(k, v) for k, v in args if k not in ("marker", "limit")]
        query += [("marker", next_marker), ("limit", str(limit))]
        body["next"] = "/v2/images?" + urllib.parse.urlencode(query)
    return body
