"""``POST /servers/{id}/action`` ``evacuate`` at 2.1 (admin): ``{"host"?,
"onSharedStorage" (required), "adminPass"?}`` -> 200 ``{"adminPass"}``.

mininova has no shared instance storage: ``onSharedStorage: true`` is a 400
saying so (the VM is rebuilt from its image on the destination). A VM whose
host's compute service is still up is a 400, as Nova answers
ComputeServiceInUse; the rest are EvacuationService's answers
(nova_api/evacuation.py)."""
from flask import current_app, jsonify

from common import exception
from nova_api import validation
from nova_api.openstack.compute import params

# nova/api/openstack/compute/schemas/evacuate.py (2.1)
EVACUATE = {"type": "object",
            "properties": {"host": {"type": "string", "minLength": 1, "maxLength": 255,
                                    "pattern": validation.REF_PATTERN},
                           "onSharedStorage": params.BOOLEAN,
                           "adminPass": {"type": "string", "maxLength": 255}},
            "required": ["onSharedStorage"],
            "additionalProperties": False}


def evacuate(inst, ctxt, args):
    validation.validate(args, EVACUATE, root="evacuate")
    if params.boolean("evacuate.onSharedStorage", args["onSharedStorage"]):
        raise exception.ValidationError(
            field="evacuate.onSharedStorage",
            reason="this cloud has no shared instance storage: the VM is rebuilt from its "
                   "image on the destination (send false)")
    service = current_app.extensions["mininova"]["evacuations"]
    try:
        accepted = service.evacuate(ctxt, inst.id, host=args.get("host"),
                                    admin_pass=args.get("adminPass"))
    except exception.ComputeServiceInUse as e:
        raise exception.Invalid(e.message) from e
    return jsonify({"adminPass": accepted["admin_pass"]})
