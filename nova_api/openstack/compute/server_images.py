"""``createImage`` and ``createBackup`` of ``POST /servers/{id}/action`` at
2.1: a snapshot of the server, or one kept in a rotation of backups
(nova_api/vm_snapshots.py).

Body ``{"createImage": {"name", "metadata"?}}`` as Nova's schema
(create_image: a name of 1-255 characters, metadata a flat object of
strings); 202 with no body and the image's URL in ``Location`` (2.1; the
body with ``image_id`` came at 2.45); 409 naming the state when the server
cannot be snapshotted now, or when it is locked and the caller no admin.

``createBackup``: ``{"name", "backup_type", "rotation", "metadata"?}`` (a
non-negative integer or its digits); 202, with ``Location`` when rotation
is not 0 (as Nova); the image has ``image_type`` backup and
``backup_type``; once it is active, the server's host deletes its oldest
active backups of that type beyond ``rotation``."""
from flask import current_app

from common import exception
from nova_api import validation
from nova_api.openstack import urls
from nova_api.openstack.compute import params

# nova/api/openstack/compute/schemas/servers.py create_image (2.1)
CREATE_IMAGE = {"type": "object",
                "properties": {"name": params.NAME,
                               "metadata": {"type": "object",
                                            "patternProperties": {
                                                "^[a-zA-Z0-9-_:. ]{1,255}$": {
                                                    "type": "string", "maxLength": 255}},
                                            "additionalProperties": False}},
                "required": ["name"],
                "additionalProperties": False}


CREATE_BACKUP = {"type": "object",
                 "properties": {"name": params.NAME,
                                "backup_type": {"type": "string"},
                                "rotation": {"type": ["integer", "string"], "pattern": "^[0-9]+$",
                                             "minimum": 0},
                                "metadata": CREATE_IMAGE["properties"]["metadata"]},
                 "required": ["name", "backup_type", "rotation"],
                 "additionalProperties": False}


def _service():
    return current_app.extensions["mininova"]["snapshot_service"]


def create_backup(inst, ctxt, args):
    validation.validate(args, CREATE_BACKUP, root="createBackup")
    rotation = int(args["rotation"])
    if len(args["backup_type"]) > 255:
        raise exception.ValidationError(field="createBackup.backup_type",
                                        reason="is longer than 255 characters")
    try:
        image = _service().backup(ctxt, inst.id, args["name"], args["backup_type"], rotation,
                                  args.get("metadata"))
    except exception.PayloadTooLarge as e:
        raise exception.Forbidden(e.message) from e
    headers = {"Location": urls.url("image/v2/images", image.id)} if rotation > 0 else {}
    return "", 202, headers


def create_image(inst, ctxt, args):
    validation.validate(args, CREATE_IMAGE, root="createImage")
    try:
        image = _service().snapshot(ctxt, inst.id, args["name"], args.get("metadata"))
    except exception.PayloadTooLarge as e:  # Glance's property quota; Nova says 403
        raise exception.Forbidden(e.message) from e
    return "", 202, {"Location": urls.url("image/v2/images", image.id)}
