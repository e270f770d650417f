"""Nova v2.1 subset under /compute, at microversion 2.1 only
(``microversion``): version discovery (``versions``, no token) and one
blueprint per resource, each made with ``resource.blueprint()`` and listed
in ``BLUEPRINTS`` (served with and without a project id in the URL).

Shared by the resources: ``views`` (links and times), ``paging`` (limit,
marker, next links); errors are Nova faults (nova_api/openstack/faults.py)
from the one exception hierarchy."""
from flask import request

from nova_api.openstack.compute import microversion, resource, versions

BLUEPRINTS = ()


def _versioned(path):
    return path.startswith(resource.VERSIONED_ROOT)


def register(app):
    app.register_blueprint(versions.bp)
    resource.register(app, BLUEPRINTS)

    @app.after_request
    def _version_headers(response):
        if _versioned(request.path):
            microversion.add_headers(response)
        return response
