"""os-aggregates, read-only (admin): mininova has no host aggregates, so the
list is empty. ``openstack hypervisor show`` reads it to say which
aggregates a host belongs to."""
from flask import jsonify

from nova_api import auth
from nova_api.openstack.compute import resource

bp = resource.blueprint("compute_aggregates", __name__)


@bp.get("/os-aggregates")
@auth.admin_only
def index():
    return jsonify({"aggregates": []})
