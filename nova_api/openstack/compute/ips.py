"""A server's addresses at 2.1: ``GET /servers/{id}/ips`` is
``{"addresses": {network: [{"version", "addr"}]}}`` and
``GET /servers/{id}/ips/{network}`` is ``{network: [...]}``, without the
``OS-EXT-IPS*`` keys of the detail view; a network the server has no address
in is a 404 (as Nova's "There is no such network")."""
from flask import current_app, jsonify

from common import exception
from nova_api.openstack.compute import resource, server_lookup, server_views

bp = resource.blueprint("compute_server_ips", __name__)


def _addresses(server_id):
    network_name = current_app.extensions["mininova"]["conf"].compute.network_name
    return server_views.addresses(server_lookup.server(server_id), network_name,
                                  extended=False)


@bp.get("/servers/<server_id>/ips")
def index(server_id):
    return jsonify({"addresses": _addresses(server_id)})


@bp.get("/servers/<server_id>/ips/<network>")
def show(server_id, network):
    addresses = _addresses(server_id)
    if network not in addresses:
        raise exception.NetworkNotFound(network=network[:64])
    return jsonify({network: addresses[network]})
