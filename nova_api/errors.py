"""The one place where exceptions become HTTP responses.

Views raise ``common.exception`` types and hold no try/except for them; anything
else is logged with its traceback and answered as a 500 that says no more."""
import logging

from flask import jsonify
from werkzeug import exceptions as wexc

from common import exception

LOG = logging.getLogger(__name__)


def _error(code, message):
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = code
    return response


def register(app):
    @app.errorhandler(exception.MininovaException)
    def _mininova(e):
        if e.code >= 500:
            LOG.warning("%s: %s", type(e).__name__, e.message)
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
