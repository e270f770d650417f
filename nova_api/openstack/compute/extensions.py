"""The static ``/extensions`` list of Nova's v2.1 API (deprecated there, kept
for old clients): what mininova implements of Nova's extension names, plus
the two tempest asks for (``Hosts`` by name, ``os-consoles`` by alias).
Every entry has Nova's fixed namespace and date and no links."""
from flask import jsonify

from common import exception
from nova_api.openstack.compute import resource

bp = resource.blueprint("compute_extensions", __name__)

NAMESPACE = "http://docs.openstack.org/compute/ext/fake_xml"
UPDATED = "2014-12-03T00:00:00Z"
# (alias, name, description), sorted by alias as Nova lists them.
EXTENSIONS = (
    ("OS-EXT-AZ", "ExtendedAvailabilityZone", "Extended Availability Zone support."),
    ("OS-EXT-SRV-ATTR", "ExtendedServerAttributes", "Extended Server Attributes support."),
    ("OS-EXT-STS", "ExtendedStatus", "Extended Status support."),
    ("OS-FLV-DISABLED", "FlavorDisabled", "Support to show the disabled status of a flavor."),
    ("OS-FLV-EXT-DATA", "FlavorExtraData", "Provide additional data for flavors."),
    ("OS-SRV-USG", "ServerUsage", "Adds launched_at and terminated_at on Servers."),
    ("os-availability-zone", "AvailabilityZone", "1. Add availability_zone to the Create "
     "Server API.\n2. Add availability zones describing."),
    ("os-console-output", "ConsoleOutput", "Console log output support, with tailing ability."),
    ("os-consoles", "Consoles", "Interactive Console support."),
    ("os-extended-status", "ExtendedStatus", "Extended Status support."),
    ("os-flavor-access", "FlavorAccess", "Flavor access support."),
    ("os-flavor-extra-specs", "FlavorExtraSpecs", "Flavors extra specs support."),
    ("os-flavor-manage", "FlavorManage", "Flavor create/delete API support."),
    ("os-hosts", "Hosts", "Admin-only host administration."),
    ("os-hypervisors", "Hypervisors", "Admin-only hypervisor administration."),
    ("os-instance-actions", "InstanceActions", "View a log of actions and events taken on an "
     "instance."),
    ("os-keypairs", "Keypairs", "Keypair Support."),
    ("os-lock-server", "LockServer", "Enable lock/unlock server actions."),
    ("os-pause-server", "PauseServer", "Enable pause/unpause server actions."),
    ("os-quota-class-sets", "QuotaClasses", "Quota classes management support."),
    ("os-quota-sets", "Quotas", "Quotas management support."),
    ("os-server-groups", "ServerGroups", "Server group support."),
    ("os-server-start-stop", "ServerStartStop", "Start/Stop instance compute API support."),
    ("os-services", "Services", "Services support."),
    ("os-suspend-server", "SuspendServer", "Enable suspend/resume server actions."),
    ("servers", "Servers", "Servers."),
)


def _view(alias, name, description):
    return {"alias": alias, "name": name, "description": description, "links": [],
            "namespace": NAMESPACE, "updated": UPDATED}


@bp.get("/extensions")
def index():
    return jsonify({"extensions": [_view(*ext) for ext in EXTENSIONS]})


@bp.get("/extensions/<alias>")
def show(alias):
    for ext in EXTENSIONS:
        if ext[0] == alias:
            return jsonify({"extension": _view(*ext)})
    raise exception.NotFound("Extension %s could not be found." % alias[:64])
