"""A server's metadata at 2.1 (Nova's server_metadata.py):

- ``GET /servers/{id}/metadata``: ``{"metadata": {...}}``;
- ``PUT`` the same: replaces all of it; ``POST``: sets the given keys and
  keeps the others (both answer 200 with the whole metadata after);
- ``GET /servers/{id}/metadata/{key}``: ``{"meta": {key: value}}``, 404 for
  a key the server has not;
- ``PUT`` the same: the body is exactly ``{"meta": {key: value}}`` for the
  URL's key (else 400); 200 with it;
- ``DELETE`` the same: 204.

Keys ``^[a-zA-Z0-9-_:. ]{1,255}$`` and string values of at most 255
characters (400 naming the field), at most the project's ``metadata_items``
(403); a locked server refuses a non-admin's change (409). VMService checks
all three, in the transaction that writes."""
from flask import jsonify

from common import exception
from nova_api import validation
from nova_api.openstack.compute import resource, server_lookup

bp = resource.blueprint("compute_server_metadata", __name__)

ALL_SCHEMA = {"type": "object",
              "properties": {"metadata": {"type": "object"}},
              "required": ["metadata"],
              "additionalProperties": False}
ITEM_SCHEMA = {"type": "object",
               "properties": {"meta": {"type": "object", "minProperties": 1,
                                       "maxProperties": 1}},
               "required": ["meta"],
               "additionalProperties": False}
# What a 404 repeats of an unknown key.
_SHOWN = 64


def _server_and_context(server_id):
    inst = server_lookup.server(server_id)
    return inst, server_lookup.acting_context(inst)


@bp.get("/servers/<server_id>/metadata")
def index(server_id):
    inst, ctxt = _server_and_context(server_id)
    return jsonify({"metadata": server_lookup.vm_metadata().get(ctxt, inst.id)})


@bp.put("/servers/<server_id>/metadata")
def replace(server_id):
    metadata = validation.json_body(ALL_SCHEMA)["metadata"]
    inst, ctxt = _server_and_context(server_id)
    return jsonify({"metadata": server_lookup.vm_metadata().replace(
        ctxt, inst.id, metadata)})


@bp.post("/servers/<server_id>/metadata")
def merge(server_id):
    metadata = validation.json_body(ALL_SCHEMA)["metadata"]
    inst, ctxt = _server_and_context(server_id)
    return jsonify({"metadata": server_lookup.vm_metadata().merge(
        ctxt, inst.id, metadata)})


@bp.get("/servers/<server_id>/metadata/<key>")
def show(server_id, key):
    inst, ctxt = _server_and_context(server_id)
    metadata = server_lookup.vm_metadata().get(ctxt, inst.id)
    if key not in metadata:
        raise exception.MetadataItemNotFound(instance=inst.id, key=key[:_SHOWN])
    return jsonify({"meta": {key: metadata[key]}})


@bp.put("/servers/<server_id>/metadata/<key>")
def set_item(server_id, key):
    meta = validation.json_body(ITEM_SCHEMA)["meta"]
    if key not in meta:
        raise exception.Invalid("Request body and URI mismatch: the body must set exactly "
                                "the key of the URL")
    inst, ctxt = _server_and_context(server_id)
    return jsonify({"meta": server_lookup.vm_metadata().set_item(
        ctxt, inst.id, key, meta[key])})


@bp.delete("/servers/<server_id>/metadata/<key>")
def delete_item(server_id, key):
    inst, ctxt = _server_and_context(server_id)
    metadata = server_lookup.vm_metadata().get(ctxt, inst.id)
    if key not in metadata:
        raise exception.MetadataItemNotFound(instance=inst.id, key=key[:_SHOWN])
    server_lookup.vm_metadata().delete_item(ctxt, inst.id, key)
    return "", 204
