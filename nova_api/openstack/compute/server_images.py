"""``createImage`` of ``POST /servers/{id}/action`` at 2.1: a snapshot of the
server (nova_api/vm_snapshots.py).

Body ``{"createImage": {"name", "metadata"?}}`` as Nova's schema
(create_image: a name of 1-255 characters, metadata a flat object of
strings); 202 with no body and the image's URL in ``Location`` (2.1; the
body with ``image_id`` came at 2.45); 409 naming the state when the server
cannot be snapshotted now, or when it is locked and the caller no admin."""
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


def create_image(inst, ctxt, args):
    validation.validate(args, CREATE_IMAGE, root="createImage")
    service = current_app.extensions["mininova"]["snapshot_service"]
    try:
        image = service.snapshot(ctxt, inst.id, args["name"], args.get("metadata"))
    except exception.PayloadTooLarge as e:  # Glance's property quota; Nova says 403
        raise exception.Forbidden(e.message) from e
    return "", 202, {"Location": urls.url("image/v2/images", image.id)}
