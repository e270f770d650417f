"""The bodies of POST /servers and PUT /servers/{id} at 2.1: Nova's schemas
(nova/api/openstack/compute/schemas/servers.py; an unknown member is a 400)
and what mininova can do of them, each refusal a 400 naming the field:

- ``networks``: ``[]`` (OSC at 2.1: the default network) or ``{"uuid"}`` of
  the one network (``network_uuid``); ports and fixed IPs need Neutron;
- ``block_device_mapping_v2``: only the image as the local root disk (OSC
  always sends that entry), since there are no volumes;
- ``min_count``/``max_count``: up to MAX_COUNT servers, named as Nova does;
  ``security_groups``: ``default`` only;
  ``availability_zone``: ``nova`` only;
- the scheduler hint ``group`` under either spelling
  (``os:scheduler_hints``, tempest; ``OS-SCH-HNT:scheduler_hints``, OSC).

Metadata, key name, user data and access IPs are checked by VMService
(nova_api/vm_fields.py), the same for /v1."""
import secrets
import uuid

from common import exception
from common.db.models import Instance
from nova_api import validation
from nova_api.openstack.compute import params

UUID_PATTERN = ("^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?"
                "[0-9a-fA-F]{12}$")
_STRING = {"type": "string"}
# What is looked up in the database: no control characters (NUL cannot even
# be compared on PostgreSQL).
_REF = {"type": "string", "maxLength": 2048, "pattern": validation.REF_PATTERN}
_COUNT = {"type": ["integer", "string"], "pattern": "^[0-9]{1,9}$", "minimum": 1}
_BDM_KEYS = ("uuid", "boot_index", "source_type", "destination_type",
             "delete_on_termination", "device_name", "device_type", "disk_bus",
             "guest_format", "volume_size", "no_device", "tag")
_HINTS = {"type": "object", "properties": {"group": {"type": "string",
                                                     "pattern": UUID_PATTERN}}}
AVAILABILITY_ZONE = "nova"
# Servers one request may create (Nova's only bound is the quota; this one
# keeps a project without quota from asking for millions).
MAX_COUNT = 100
SECURITY_GROUP = "default"

CREATE_SCHEMA = {
    "type": "object",
    "properties": {
        "server": {
            "type": "object",
            "properties": {
                "name": params.NAME,
                "imageRef": {"type": "string", "maxLength": 2048},
                "flavorRef": {"type": ["string", "integer"], "minLength": 1,
                              "maxLength": 2048, "pattern": validation.REF_PATTERN},
                "adminPass": {"type": "string", "maxLength": 255},
                "metadata": {"type": "object"},
                "networks": {"type": "array", "items": {
                    "type": "object",
                    "properties": {"uuid": _STRING, "port": {"type": ["string", "null"]},
                                   "fixed_ip": _STRING},
                    "additionalProperties": False}},
                "OS-DCF:diskConfig": {"type": "string", "enum": ["AUTO", "MANUAL"]},
                "accessIPv4": _STRING,
                "accessIPv6": _STRING,
                "key_name": dict(_REF, minLength=1, maxLength=255),
                "security_groups": {"type": "array", "items": {
                    "type": "object", "properties": {"name": _STRING},
                    "additionalProperties": False}},
                "availability_zone": {"type": "string", "minLength": 1, "maxLength": 255},
                "user_data": {"type": "string"},
                "config_drive": {"anyOf": [params.BOOLEAN, {"type": "string", "enum": [""]}]},
                "min_count": _COUNT,
                "max_count": _COUNT,
                "block_device_mapping_v2": {"type": "array", "items": {
                    "type": "object",
                    "properties": {k: {} for k in _BDM_KEYS},
                    "additionalProperties": False}},
            },
            "required": ["name", "flavorRef"],
            "additionalProperties": False,
        },
        "os:scheduler_hints": _HINTS,
        "OS-SCH-HNT:scheduler_hints": _HINTS,
    },
    "required": ["server"],
    "additionalProperties": False,
}

UPDATE_SCHEMA = {
    "type": "object",
    "properties": {"server": {
        "type": "object",
        "properties": {"name": params.NAME, "accessIPv4": _STRING, "accessIPv6": _STRING},
        "additionalProperties": False,
    }},
    "required": ["server"],
    "additionalProperties": False,
}


def network_uuid(network_name):
    """The id of mininova's one network (``[compute] network_name``): stable,
    derived from its name, as there is no network service to ask."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "mininova:network:" + network_name))


def check_name(name, field="name"):
    """Names fit the column that stores them (255 characters, as Nova's),
    "-<n>" of a multiple create included."""
    longest = Instance.__table__.c.name.type.length
    if longest and len(name) > longest:
        raise exception.ValidationError(field=field, reason="must be at most %d characters "
                                        "long" % longest)
    return name


def _last_segment(ref):
    return str(ref).rstrip("/").rsplit("/", 1)[-1]


def _image_ref(server):
    """The image: ``imageRef`` (an id, or an href ending in one), else the
    block device mapping's image."""
    ref = server.get("imageRef", "")
    bdms = server.get("block_device_mapping_v2")
    if bdms is not None:
        if len(bdms) != 1:
            raise exception.ValidationError(
                field="server.block_device_mapping_v2",
                reason="only the image as the local root disk is supported (one entry)")
        bdm = bdms[0]
        local_image = (bdm.get("source_type") == "image"
                       and bdm.get("destination_type", "local") == "local"
                       and str(bdm.get("boot_index", 0)) == "0"
                       and isinstance(bdm.get("uuid"), str))
        if not local_image or (ref and _last_segment(ref) != bdm["uuid"]):
            raise exception.ValidationError(
                field="server.block_device_mapping_v2",
                reason="only the image (imageRef) as the local root disk at boot_index 0 "
                       "is supported (no volumes)")
        ref = ref or bdm["uuid"]
    if not ref:
        raise exception.ValidationError(field="server.imageRef",
                                        reason="is required (there is no boot from volume)")
    image_id = _last_segment(ref)
    try:
        return str(uuid.UUID(image_id))
    except ValueError:
        raise exception.ValidationError(field="server.imageRef",
                                        reason="must be an image id (a UUID)") from None


def _check_networks(networks, network_name):
    ours = network_uuid(network_name) if network_name else None
    for i, network in enumerate(networks or ()):
        field = "server.networks.%d" % i
        if "port" in network or "fixed_ip" in network:
            raise exception.ValidationError(field=field, reason="ports and fixed IPs are "
                                            "not supported (there is no network service)")
        if "uuid" not in network:
            raise exception.ValidationError(field=field + ".uuid", reason="is required")
        if network["uuid"] != ours:
            raise exception.ValidationError(
                field=field + ".uuid", reason="must be the id of network %r (%s)" % (
                    network_name, ours) if ours else "no network is configured")


def _counts(server):
    """(min_count, max_count): Nova creates max_count servers if the quota
    allows, else as many as it allows but at least min_count."""
    min_count = params.integer("server.min_count", server.get("min_count", 1), minimum=1,
                               maximum=MAX_COUNT)
    max_count = params.integer("server.max_count", server.get("max_count", min_count),
                               minimum=1, maximum=MAX_COUNT)
    if min_count > max_count:
        raise exception.ValidationError(field="server.min_count",
                                        reason="must not exceed max_count")
    return min_count, max_count


def _names(name, count):
    """The servers' names: ``name`` for one, Nova's "<name>-<n>" (n from 1)
    for several."""
    if count == 1:
        return [check_name(name, "server.name")]
    return [check_name("%s-%d" % (name, n), "server.name") for n in range(1, count + 1)]


def _check_placement(server):
    for i, group in enumerate(server.get("security_groups") or ()):
        if group.get("name") != SECURITY_GROUP:
            raise exception.ValidationError(
                field="server.security_groups.%d.name" % i,
                reason="no security group but %r exists" % SECURITY_GROUP)
    zone = server.get("availability_zone")
    if zone is not None and zone != AVAILABILITY_ZONE:
        raise exception.ValidationError(field="server.availability_zone",
                                        reason="the only zone is %r" % AVAILABILITY_ZONE)


def _group(body):
    for spelling in ("os:scheduler_hints", "OS-SCH-HNT:scheduler_hints"):
        group = (body.get(spelling) or {}).get("group")
        if group is not None:
            return group
    return None


def generate_password(length=12):
    """A random adminPass (Nova's generate_password: letters and digits
    without look-alikes)."""
    symbols = "23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
    return "".join(secrets.choice(symbols) for _ in range(length))


class CreateRequest:
    """What a create body (validated against CREATE_SCHEMA) asks for:
    ``names`` (one per server wanted), of which at least ``min_count`` must
    be created; ``args``/``kwargs`` of VMService.create after the name;
    ``password`` the adminPass to answer."""

    def __init__(self, body, network_name):
        server = body["server"]
        image_ref = _image_ref(server)
        _check_networks(server.get("networks"), network_name)
        self.min_count, max_count = _counts(server)
        self.names = _names(server["name"], max_count)
        _check_placement(server)
        self.args = (image_ref, _last_segment(server["flavorRef"]), _group(body))
        self.kwargs = {"metadata": server.get("metadata"), "key_name": server.get("key_name"),
                       "user_data": server.get("user_data"),
                       "access_ipv4": server.get("accessIPv4"),
                       "access_ipv6": server.get("accessIPv6"),
                       "disk_config": server.get("OS-DCF:diskConfig", "MANUAL")}
        # Nova answers the password it would set; mininova sets none in the
        # guest (keys and user_data reach it through the config drive).
        self.password = server.get("adminPass") or generate_password()


def update_arguments(body):
    """The keyword arguments of VMService.update from an update body
    validated against UPDATE_SCHEMA: only what it names changes; an empty
    access IP clears it."""
    server = body["server"]
    changes = {}
    if "name" in server:
        changes["name"] = check_name(server["name"], "server.name")
    for key, argument in (("accessIPv4", "access_ipv4"), ("accessIPv6", "access_ipv6")):
        if key in server:
            changes[argument] = server[key] or None
    return changes
