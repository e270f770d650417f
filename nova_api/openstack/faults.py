"""Error bodies of the OpenStack surfaces, one renderer per shape
(nova_api.errors calls the one registered for the request's path).

- 401 on every surface is keystonemiddleware's answer, whatever the reason
  (the reason is logged, not told): a fixed body and ``WWW-Authenticate:
  Keystone uri="{base}/identity"``, which keystoneauth reads to re-authenticate.
- Keystone (and Glance, whose clients read only the status):
  ``{"error": {"code", "title", "message"}}``.
- Nova: ``{"<faultName>": {"code", "message"}}``, the fault named by the
  status as in nova/api/openstack/wsgi.py ``Fault._fault_names``."""
from flask import jsonify

from nova_api.openstack import urls

UNAUTHORIZED_MESSAGE = "The request you have made requires authentication."

TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
          405: "Method Not Allowed", 406: "Not Acceptable", 409: "Conflict",
          413: "Request Entity Too Large", 415: "Unsupported Media Type",
          429: "Too Many Requests", 500: "Internal Server Error", 501: "Not Implemented",
          503: "Service Unavailable"}

NOVA_FAULT_NAMES = {400: "badRequest", 401: "unauthorized", 403: "forbidden",
                    404: "itemNotFound", 405: "badMethod", 409: "conflictingRequest",
                    413: "overLimit", 415: "badMediaType", 429: "overLimit",
                    501: "notImplemented", 503: "serviceUnavailable"}


def _json(body, code):
    response = jsonify(body)
    response.status_code = code
    return response


def unauthorized():
    """keystonemiddleware's 401."""
    response = _json({"error": {"code": 401, "title": "Unauthorized",
                                "message": UNAUTHORIZED_MESSAGE}}, 401)
    base = urls.base_or_none()
    response.headers["WWW-Authenticate"] = 'Keystone uri="%s/identity"' % (base or "")
    return response


def keystone_error(code, message):
    if code == 401:
        return unauthorized()
    return _json({"error": {"code": code, "title": TITLES.get(code, "Error"),
                            "message": message}}, code)


def nova_fault(code, message):
    if code == 401:
        return unauthorized()
    name = NOVA_FAULT_NAMES.get(code, "computeFault")
    return _json({name: {"code": code, "message": message}}, code)
