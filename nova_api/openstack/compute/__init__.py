"""Nova v2.1 subset under /compute, at microversion 2.1 only
(``microversion``): version discovery (``versions``, no token) and one
blueprint per resource, each made with ``resource.blueprint()`` and listed
in ``BLUEPRINTS`` (served with and without a project id in the URL).

Shared by the resources: ``views`` (links and times), ``paging`` (limit,
marker, next links), ``params`` (Nova's booleans and integers as strings);
errors are Nova faults (nova_api/openstack/faults.py) from the one
exception hierarchy."""
from flask import request

from nova_api.openstack.compute import (aggregates, availability_zones, extensions,
                                        flavor_access, flavor_extra_specs, flavors,
                                        hypervisors, images, instance_actions, ips, keypairs,
                                        microversion, migrations, quota_sets, resource,
                                        server_actions, server_groups, server_metadata,
                                        servers, services, versions)

BLUEPRINTS = (servers.bp, flavors.bp, flavor_access.bp, flavor_extra_specs.bp, keypairs.bp,
              server_groups.bp, quota_sets.bp, availability_zones.bp, services.bp,
              hypervisors.bp, aggregates.bp, extensions.bp,
              server_actions.bp, ips.bp, instance_actions.bp, server_metadata.bp,
              migrations.bp, images.bp)


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
