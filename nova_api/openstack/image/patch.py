"""``PATCH /v2/images/{id}``: a JSON patch in Glance's media type
(``application/openstack-images-v2.1-json-patch``, or v2.0's), a list of
``add``, ``replace`` and ``remove`` operations on one top-level attribute
each (``/name``, ``/tags``, ``/hw_disk_bus``...), applied in order to a copy
of the image: all of them or none.

As Glance: ``replace`` or ``remove`` of an extra property the image lacks is
409; read-only and reserved attributes are 403, as is removing a core one;
``add`` of something present replaces it."""
from common import exception
from nova_api import validation
from nova_api.openstack.image import schemas

MEDIA_TYPES = ("application/openstack-images-v2.1-json-patch",
               "application/openstack-images-v2.0-json-patch")
# Core attributes as a patch sees them (tags are a list of their own).
EDITABLE = ("name", "visibility", "protected", "os_hidden", "disk_format", "container_format",
            "min_ram", "min_disk", "owner")
CHANGES = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {"op": {"enum": ["add", "replace", "remove"]},
                       "path": {"type": "string", "pattern": "^/", "maxLength": 1024},
                       "value": {}, "from": {"type": "string"}},
        "required": ["op", "path"],
        "additionalProperties": False,
    },
}


def read_changes():
    """The request's list of changes; 415 for another media type, 400 for a
    malformed one."""
    changes = validation.json_body(CHANGES, media_types=MEDIA_TYPES)
    for i, change in enumerate(changes):
        if change["op"] != "remove" and "value" not in change:
            raise exception.ValidationError(field="%d.value" % i, reason="is required")
    return changes


def _attribute(path):
    """The attribute a JSON pointer names (one level only)."""
    parts = path[1:].split("/")
    if len(parts) != 1 or not parts[0]:
        raise exception.ValidationError(field="path", reason="nested paths are not allowed: "
                                        "name one attribute, e.g. /name")
    return parts[0].replace("~1", "/").replace("~0", "~")


def apply(image, properties, tags, changes):
    """(core attributes, extra properties) of ``image`` after ``changes``."""
    core = {name: getattr(image, name) for name in EDITABLE}
    core["tags"] = list(tags)
    extra = dict(properties)
    for change in changes:
        name, op = _attribute(change["path"]), change["op"]
        schemas.check_name(name, creating=False)
        if op == "remove":
            if name in schemas.CORE:
                raise exception.Forbidden("Attribute '%s' cannot be removed." % name)
            if name not in extra:
                raise exception.Conflict(reason="Property %s does not exist." % name[:255])
            del extra[name]
            continue
        value = change["value"]
        schemas.one_value(name, value)
        if name in schemas.CORE:
            core[name] = value
        elif op == "replace" and name not in extra:
            raise exception.Conflict(reason="Property %s does not exist." % name[:255])
        else:
            extra[name] = value
    return core, extra
