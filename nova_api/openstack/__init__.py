"""The OpenStack APIs, beside the native /v1 on the same listener: Keystone
v3 under /identity, Nova v2.1 under /compute, Glance v2 under /image
(``surfaces.py``), for the unmodified OpenStack clients.

Shared by the three:
- ``urls``: the public base URL and absolute links;
- ``catalog``: the service catalog;
- ``surfaces``: each surface's prefix, error renderer (``faults``) and
  request-id headers; ``register`` wires them into the app;
- tokens, roles and the reader's read-only rule: nova_api/auth.py, as for /v1
  (a token from either API works on both).
A surface's package (``identity/``, ``compute/``, ``image/``) holds one blueprint
per resource and lists them in ``BLUEPRINTS``."""
from flask import request

from common import context
from nova_api import errors
from nova_api.openstack import compute, identity, image, surfaces


def register(app):
    for surface in surfaces.SURFACES:
        errors.add_renderer(app, surface.prefix, surface.render_error)
    for bp in identity.BLUEPRINTS + image.BLUEPRINTS:
        app.register_blueprint(bp)
    compute.register(app)

    @app.after_request
    def _request_id_headers(response):
        surface = surfaces.of(request.path)
        ctxt = context.get_current()
        if surface is not None and ctxt is not None:
            for name in surface.request_id_headers:
                response.headers[name] = ctxt.request_id
        return response
