"""The one place where exceptions become HTTP responses.

Views raise ``common.exception`` types and hold no try/except for them; anything
else is logged with its traceback and answered as a 500 that says no more.

Each API surface answers errors in its own shape: ``/v1`` as
``{"error": {"code", "message"}}``; the OpenStack surfaces register their
renderer for their path prefix (``add_renderer``, see nova_api/openstack).
A renderer is ``render(code, message) -> Response`` and must not raise."""
import logging

from flask import current_app, jsonify, request
from werkzeug import exceptions as wexc

from common import exception

LOG = logging.getLogger(__name__)


def v1_error(code, message):
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = code
    return response


def add_renderer(app, prefix, render):
    """Errors of requests whose path is ``prefix`` or below it are rendered
    by ``render`` (the longest matching prefix wins)."""
    renderers = app.extensions["mininova"].setdefault("error_renderers", [])
    renderers.append((prefix.rstrip("/"), render))
    renderers.sort(key=lambda item: -len(item[0]))


def _renderer():
    path = request.path
    for prefix, render in current_app.extensions["mininova"].get("error_renderers", ()):
        if path == prefix or path.startswith(prefix + "/"):
            return render
    return v1_error


def _error(code, message):
    return _renderer()(code, message)


def register(app):
    @app.errorhandler(exception.MininovaException)
    def _mininova(e):
        if e.code >= 500:
            LOG.warning("%s: %s", type(e).__name__, e.message)
        elif e.code == 401:
            # The answer says only "requires authentication" on the OpenStack
            # surfaces; the log says why.
            LOG.info("unauthorized: %s", e.message)
        return _error(e.code, e.message)

    @app.errorhandler(wexc.HTTPException)
    def _http(e):
        response = _error(e.code, e.description or e.name)
        # Keep the headers the exception carries, e.g. a 405's Allow.
        for name, value in e.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(Exception)
    def _unexpected(e):
        LOG.exception("unexpected error")
        return _error(500, "Internal error; see the API log for this request id.")
