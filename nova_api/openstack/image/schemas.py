"""What Glance v2 accepts in an image's attributes, at create and in a
PATCH: the core attributes with their types, the read-only and reserved
ones (403, as Glance), and extra properties (any name up to 255
characters, a string value)."""
from common import exception
from common.db import images as db_images
from nova_api import diskformats, validation

UUID_PATTERN = "^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"
MAX_INT = 2 ** 31 - 1
CONTAINER_FORMATS = ("bare",)
MAX_PROPERTIES = 128     # Glance's image_property_quota
MAX_TAGS = 128           # Glance's image_tag_quota
MAX_VALUE = 65535        # characters of an extra property's value

TEXT = {"type": "string", "pattern": validation.TEXT_PATTERN}
CORE = {
    "id": {"type": "string", "pattern": UUID_PATTERN},
    "name": {"type": ["string", "null"], "maxLength": 255, "pattern": validation.TEXT_PATTERN},
    "visibility": {"enum": list(db_images.VISIBILITIES)},
    "protected": {"type": "boolean"},
    "os_hidden": {"type": "boolean"},
    "disk_format": {"enum": list(diskformats.DISK_FORMATS) + [None]},
    "container_format": {"enum": list(CONTAINER_FORMATS) + [None]},
    "min_ram": {"type": "integer", "minimum": 0, "maximum": MAX_INT},
    "min_disk": {"type": "integer", "minimum": 0, "maximum": MAX_INT},
    "tags": {"type": "array", "items": dict(TEXT, minLength=1, maxLength=255)},
    "owner": {"type": ["string", "null"], "maxLength": 255, "pattern": validation.TEXT_PATTERN},
}
IMAGE = {"type": "object", "properties": CORE}
# Shown, never set by a client.
READ_ONLY = frozenset({"status", "checksum", "os_hash_algo", "os_hash_value", "size",
                       "virtual_size", "created_at", "updated_at", "self", "file", "schema",
                       "direct_url", "stores"})
RESERVED = frozenset({"location", "locations", "deleted", "deleted_at"})
RESERVED_PREFIX = "os_glance"
# Core attributes a PATCH may not remove.
NOT_REMOVABLE = frozenset(CORE) | READ_ONLY


def check_name(name, creating):
    """403 for an attribute a client may not write (``id`` is writable at
    create only)."""
    if name in READ_ONLY or (name == "id" and not creating):
        raise exception.Forbidden("Attribute '%s' is read-only." % name)
    if name in RESERVED or name.startswith(RESERVED_PREFIX):
        raise exception.Forbidden("Attribute '%s' is reserved." % name)


def check_property(name, value):
    """An extra property: a name of 1-255 printable characters, a string."""
    if not 1 <= len(name) <= 255 or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise exception.ValidationError(field=name[:255] or "(empty name)",
                                        reason="a property name must be 1-255 characters "
                                        "without control characters")
    if not isinstance(value, str):
        raise exception.ValidationError(field=name, reason="must be of type string")
    if len(value) > MAX_VALUE or "\x00" in value:
        raise exception.ValidationError(
            field=name, reason="must be at most %d characters, without NUL" % MAX_VALUE)


def split(attributes, creating):
    """(core attributes, extra properties) of a body of ``attributes``,
    each checked; 403 for read-only or reserved names, 400 for bad values,
    413 past the quotas."""
    for name in attributes:
        check_name(name, creating)
    core = {k: v for k, v in attributes.items() if k in CORE}
    extra = {k: v for k, v in attributes.items() if k not in CORE}
    validation.validate(core, IMAGE)
    for name, value in extra.items():
        check_property(name, value)
    check_quotas(extra, core.get("tags", ()))
    return core, extra


def check_quotas(properties, tags):
    if len(properties) > MAX_PROPERTIES:
        raise exception.PayloadTooLarge("Attempted to add more image properties than the "
                                        "quota allows (%d)." % MAX_PROPERTIES)
    if len(set(tags)) > MAX_TAGS:
        raise exception.PayloadTooLarge("Attempted to add more image tags than the quota "
                                        "allows (%d)." % MAX_TAGS)


def one_value(name, value):
    """A single attribute's value, as a PATCH sets it."""
    if name in CORE:
        validation.validate({name: value}, IMAGE)
    else:
        check_property(name, value)
