"""Request schemas of the identity API. As Keystone's, they accept members
they do not know (clients send a few); what they check is that each known
member has the right type and no control characters, so that bad input is
a 400 naming the field. Which user, project or method it names is then a
question of authentication: 401."""
from common import passwords
from nova_api import validation

TEXT = {"type": "string", "maxLength": 255, "pattern": validation.REF_PATTERN}
DOMAIN = {"type": "object", "properties": {"id": TEXT, "name": TEXT}}
SECRET = {"type": "string", "maxLength": 1024, "pattern": validation.REF_PATTERN}

PASSWORD = {
    "type": "object",
    "properties": {
        "user": {
            "type": "object",
            "properties": {
                "id": TEXT, "name": TEXT, "domain": DOMAIN,
                # Anything but NUL; empty is a wrong password (401), as in Keystone.
                "password": {"type": "string", "maxLength": passwords.MAX_PASSWORD_CHARS,
                             "pattern": validation.TEXT_PATTERN},
            },
            "required": ["password"],
        },
    },
    "required": ["user"],
}

AUTH = {
    "type": "object",
    "properties": {
        "auth": {
            "type": "object",
            "properties": {
                "identity": {
                    "type": "object",
                    "properties": {
                        "methods": {"type": "array", "minItems": 1, "maxItems": 1,
                                    "items": {"type": "string", "maxLength": 64,
                                              "pattern": validation.REF_PATTERN}},
                        "password": PASSWORD,
                        "token": {"type": "object", "properties": {"id": SECRET},
                                  "required": ["id"]},
                    },
                    "required": ["methods"],
                },
                # A project, or "unscoped" (keystoneauth's explicit form).
                "scope": {
                    "type": ["object", "string"],
                    "if": {"type": "string"}, "then": {"enum": ["unscoped"]},
                    "properties": {"project": {
                        "type": "object",
                        "properties": {"id": TEXT, "name": TEXT, "domain": DOMAIN}}},
                },
            },
            "required": ["identity"],
        },
    },
    "required": ["auth"],
}

PROJECTS_QUERY = {
    "type": "object",
    "properties": {"name": TEXT, "domain_id": TEXT},
}
