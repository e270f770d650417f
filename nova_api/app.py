"""Flask application factory."""
import logging
import re
import time

from flask import Flask, g, request

from common import context
from common import exception
from nova_api import compute_api, errors
from nova_api.blueprints import (actions, flavors, images, server_groups, services, versions,
                                  vms)

LOG = logging.getLogger(__name__)


PROJECT_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _identify(ctxt):
    """Who is calling. Until token auth lands, the project comes from
    ``X-Project-Id`` (like Nova's noauth2 mode) and defaults to ``default``."""
    project = request.headers.get("X-Project-Id", "default")
    if not PROJECT_RE.match(project):
        raise exception.Invalid(reason="X-Project-Id must be 1-64 letters, digits, '-' or '_'")
    ctxt.project_id = project


def create_app(conf, db, scheduler_rpcapi, compute_rpcapi):
    app = Flask("mininova-api")
    app.config["MAX_BODY_BYTES"] = conf.api.max_body_bytes
    app.json.sort_keys = False
    app.extensions["mininova"] = {
        "conf": conf,
        "db": db,
        "compute_api": compute_api.ComputeAPI(db, scheduler_rpcapi, compute_rpcapi,
                                              host=conf.host),
    }
    errors.register(app)
    for bp in (versions.bp, vms.bp, actions.bp, flavors.bp, images.bp, services.bp,
               server_groups.bp):
        app.register_blueprint(bp)

    @app.before_request
    def _start():
        g.started = time.monotonic()
        # The context (and its request id) exists first, so that even an
        # error raised while identifying the caller is logged under it.
        g.context = context.RequestContext()
        g.ctx_token = context.set_current(g.context)
        _identify(g.context)

    @app.after_request
    def _finish(response):
        ctxt = context.get_current()
        if ctxt is not None:
            response.headers["X-Request-Id"] = ctxt.request_id
        LOG.info("%s %s -> %s in %.1f ms", request.method, request.path, response.status_code,
                 (time.monotonic() - g.get("started", time.monotonic())) * 1000)
        return response

    @app.teardown_request
    def _teardown(_exc):
        token = g.pop("ctx_token", None)
        if token is not None:
            context.reset_current(token)

    return app
