"""Paging of compute collections (servers, flavors), as Nova does
(nova/api/openstack/common.py): ``limit`` (integer >= 0, at most ``[api]
max_limit``; 0 is an empty page) and ``marker`` (the id the previous page
ended with). A page as long as its limit gets a ``next`` link, even when
nothing follows, which keeps every other query parameter."""
import re
import urllib.parse

from flask import current_app, request

from common import exception
from nova_api.openstack.compute import views

_INTEGER = re.compile(r"^[0-9]{1,18}\Z")


def limit_and_marker():
    """(limit, marker or None) of the request."""
    max_limit = current_app.extensions["mininova"]["conf"].api.max_limit
    raw = request.args.get("limit")
    limit = max_limit
    if raw is not None:
        if not _INTEGER.match(raw.strip()):
            raise exception.ValidationError(field="limit",
                                            reason="must be an integer >= 0")
        limit = min(int(raw.strip()), max_limit)
    marker = request.args.get("marker")
    if marker is not None and (not marker or len(marker) > 255):
        raise exception.ValidationError(field="marker", reason="must be 1-255 characters")
    return limit, marker


def links(collection, items, limit, id_key="id"):
    """``{"<collection>_links": [next]}`` if the page is full, else {};
    ``collection`` is the path under the root (``servers/detail``)."""
    if not items or len(items) < limit:
        return {}
    query = [(k, v) for k, v in request.args.items(multi=True) if k != "marker"]
    query.append(("marker", items[-1][id_key]))
    href = views.collection_url(collection) + "?" + urllib.parse.urlencode(query)
    name = collection.split("/")[0]
    return {name + "_links": [{"rel": "next", "href": href}]}
