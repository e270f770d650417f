"""Checks of Nova's server fields, shared by /v1 and the compute API: what a
VM is created or updated with. Each raises Invalid (400) naming the field,
or MetadataLimitExceeded (403) past the project's ``metadata_items``."""
import base64
import binascii
import ipaddress
import re

from common import exception

METADATA_KEY_PATTERN = "^[a-zA-Z0-9-_:. ]{1,255}$"  # ECMA-262: $ only at the end
METADATA_KEY = re.compile(METADATA_KEY_PATTERN[:-1] + "\\Z")
METADATA_VALUE_MAX = 255
USER_DATA_MAX = 65535  # characters of base64 text, as Nova's schema
# Base64 with its padding, exactly what b64decode(validate=True) takes.
USER_DATA_PATTERN = "^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
DISK_CONFIGS = ("MANUAL", "AUTO")


NAME_MAX = 255


def name(value):
    """A VM's new name: 1-255 characters, no control characters (the APIs
    check their own rules first)."""
    if (not isinstance(value, str) or not value.strip() or len(value) > NAME_MAX
            or any(ord(c) < 32 or ord(c) == 127 for c in value)):
        raise exception.ValidationError(field="name", reason="must be 1-255 characters, not "
                                                             "blank, no control characters")
    return value


def metadata_items(metadata, field="metadata"):
    """``metadata`` checked: a {str: str} of keys matching METADATA_KEY and
    values of at most 255 characters."""
    if not isinstance(metadata, dict):
        raise exception.ValidationError(field=field, reason="must be an object")
    for key, value in metadata.items():
        if not isinstance(key, str) or not METADATA_KEY.match(key):
            raise exception.ValidationError(
                field=field, reason="key %r must be 1-255 characters of a-z A-Z 0-9 - _ : . "
                                    "and space" % (key[:80] if isinstance(key, str) else key))
        if not isinstance(value, str):
            raise exception.ValidationError(field="%s.%s" % (field, key),
                                            reason="must be a string")
        if len(value) > METADATA_VALUE_MAX:
            raise exception.ValidationError(field="%s.%s" % (field, key),
                                            reason="must be at most 255 characters long")
        if "\x00" in value:
            raise exception.ValidationError(field="%s.%s" % (field, key),
                                            reason="must not contain NUL characters")
    return dict(metadata)


def metadata_count(count, limit):
    """MetadataLimitExceeded (403) if ``count`` items pass ``limit`` (-1: none)."""
    if 0 <= limit < count:
        raise exception.MetadataLimitExceeded(requested=count, limit=limit,
                                              resource="metadata_items", used=0)


def user_data(text):
    """Base64 text of at most 65535 characters (stored as given); None stays None."""
    if text is None:
        return None
    if not isinstance(text, str):
        raise exception.ValidationError(field="user_data", reason="must be a string")
    if len(text) > USER_DATA_MAX:
        raise exception.ValidationError(field="user_data",
                                        reason="must be at most %d characters of base64"
                                               % USER_DATA_MAX)
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise exception.ValidationError(field="user_data", reason="is not base64: %s" % e)
    return text


def access_ip(value, version, field):
    """An IPv4 or IPv6 address as stored (IPv6 canonical); None stays None."""
    if value is None:
        return None
    cls = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    try:
        return str(cls(value if isinstance(value, str) else ""))
    except ValueError:
        raise exception.ValidationError(field=field,
                                        reason="must be an IPv%d address" % version) from None


def disk_config(value):
    if value not in DISK_CONFIGS:
        raise exception.ValidationError(field="disk_config",
                                        reason="must be MANUAL or AUTO")
    return value
