"""Compute microversions, as Nova negotiates them (nova/api/openstack/wsgi.py).

mininova serves 2.1 only (min = max = 2.1): the clients then send no header
or ask for 2.1, and tempest validates against its strict v2_1 schemas, which
allow no field of a later microversion.

- ``OpenStack-API-Version: compute X.Y`` (possibly among other services',
  comma-separated; the service name in any case) wins over the legacy
  ``X-OpenStack-Nova-API-Version: X.Y``; neither means 2.1; ``latest`` means
  the maximum.
- Malformed: 400 (InvalidAPIVersionString); out of range: 406
  (InvalidGlobalAPIVersion).
- Every v2.1 response, errors included, names the version it speaks and
  varies by both headers (``add_headers``)."""
import re

from flask import g, request

from common import exception

MIN_VERSION = (2, 1)
MAX_VERSION = (2, 1)
HEADER = "OpenStack-API-Version"
LEGACY_HEADER = "X-OpenStack-Nova-API-Version"
SERVICE = "compute"
_FORMAT = re.compile(r"^([1-9][0-9]*)\.([1-9][0-9]*|0)$")


def text(version):
    return "%d.%d" % version


def _requested_text():
    """The version string the request asks for, or None."""
    for item in request.headers.get(HEADER, "").split(","):
        service, _, value = item.strip().partition(" ")
        if service.lower() == SERVICE:
            return value.strip()
    return request.headers.get(LEGACY_HEADER)


def parse(value):
    """``value`` (a header's version) -> (major, minor) within range."""
    if value is None:
        return MIN_VERSION
    value = value.strip()
    if value.lower() == "latest":
        return MAX_VERSION
    match = _FORMAT.match(value)
    if match is None:
        raise exception.InvalidAPIVersionString(version=value[:40])
    version = (int(match.group(1)), int(match.group(2)))
    if not MIN_VERSION <= version <= MAX_VERSION:
        raise exception.InvalidGlobalAPIVersion(req_ver=text(version), min_ver=text(MIN_VERSION),
                                                max_ver=text(MAX_VERSION))
    return version


def negotiate():
    """``before_request`` of the v2.1 blueprints (after authentication)."""
    g.compute_version = parse(_requested_text())


def requested():
    """The version of the current request: (2, 1)."""
    return g.get("compute_version", MIN_VERSION)


def add_headers(response):
    version = text(g.get("compute_version", MIN_VERSION))
    response.headers[HEADER] = "%s %s" % (SERVICE, version)
    response.headers[LEGACY_HEADER] = version
    response.headers["Vary"] = "%s, %s" % (HEADER, LEGACY_HEADER)
    return response
