"""Keypairs at 2.1: a user's own (another user's does not exist for them).

- POST (200 at 2.1): import ``public_key``, or without one generate a pair
  and answer the private key, which is shown this once and never stored;
- GET list: ``{"keypairs": [{"keypair": {name, public_key, fingerprint}}]}``,
  each equal to its create answer without ``private_key`` and ``user_id``;
- GET one: Nova's show with ``deleted``, ``created_at``, ``id``...;
- DELETE: 202 at 2.1.
Nothing of 2.2+ (``type``) appears."""
from flask import current_app, g, jsonify

from common import ssh_keys
from common.db import keypairs as db_keypairs
from nova_api import validation
from nova_api.openstack.compute import resource, views

bp = resource.blueprint("compute_keypairs", __name__)

# Nova's safe characters, no leading or trailing space.
NAME = {"type": "string", "minLength": 1, "maxLength": 255,
        "pattern": "^(?! )[a-zA-Z0-9 _-]+(?<! )$"}
CREATE_SCHEMA = {
    "type": "object",
    "properties": {"keypair": {
        "type": "object",
        "properties": {"name": NAME,
                       "public_key": {"type": "string",
                                      "maxLength": ssh_keys.MAX_PUBLIC_KEY_LENGTH}},
        "required": ["name"],
        "additionalProperties": False,
    }},
    "required": ["keypair"],
    "additionalProperties": False,
}
GENERATED_COMMENT = "Generated-by-Nova"


def _ext():
    return current_app.extensions["mininova"]


def _summary(keypair):
    return {"name": keypair.name, "public_key": keypair.public_key,
            "fingerprint": keypair.fingerprint}


@bp.post("/os-keypairs")
def create():
    body = validation.json_body(CREATE_SCHEMA)["keypair"]
    private_key, public_key = None, body.get("public_key")
    if public_key is None:
        private_key, public_key = ssh_keys.generate(GENERATED_COMMENT)
    ctxt = g.context
    with _ext()["db"].transaction() as s:
        keypair = db_keypairs.create(s, ctxt.user_id, ctxt.project_id, body["name"], public_key,
                                     _ext()["vm_service"].quota_defaults)
        answer = dict(_summary(keypair), user_id=keypair.user_id)
    if private_key is not None:
        answer["private_key"] = private_key
    return jsonify({"keypair": answer})


@bp.get("/os-keypairs")
def index():
    with _ext()["db"].transaction() as s:
        return jsonify({"keypairs": [{"keypair": _summary(k)}
                                     for k in db_keypairs.user_list(s, g.context.user_id)]})


@bp.get("/os-keypairs/<name>")
def show(name):
    with _ext()["db"].transaction() as s:
        keypair = db_keypairs.get(s, g.context.user_id, name)
        return jsonify({"keypair": dict(
            _summary(keypair), user_id=keypair.user_id, id=keypair.id, deleted=False,
            created_at=views.naive_isotime(keypair.created_at), updated_at=None,
            deleted_at=None)})


@bp.delete("/os-keypairs/<name>")
def delete(name):
    with _ext()["db"].transaction() as s:
        db_keypairs.delete(s, g.context.user_id, name)
    return "", 202
