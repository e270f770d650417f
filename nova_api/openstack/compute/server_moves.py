"""``POST /servers/{id}/action`` moves at 2.1 (nova_api/move_service.py does
the work):

- ``resize``: ``{"flavorRef", "OS-DCF:diskConfig"?}`` -> 202; a flavor that
  does not exist, the server's own flavor or a smaller disk are 400 (Nova's
  FlavorNotFound, CannotResizeToSameFlavor, CannotResizeDisk), a quota
  without room 403;
- ``confirmResize`` (null or {}) -> 204, ``revertResize`` -> 202: 409 unless
  the server is VERIFY_RESIZE;
- ``migrate`` (admin; null or {}: 2.1 takes no host) -> 202."""
from flask import current_app, g

from common import exception
from nova_api import validation

# nova/api/openstack/compute/schemas/servers.py resize (2.1)
RESIZE = {"type": "object",
          "properties": {"flavorRef": {"type": ["string", "integer"], "minLength": 1,
                                       "maxLength": 255},
                         "OS-DCF:diskConfig": {"type": "string",
                                               "enum": ["AUTO", "MANUAL"]}},
          "required": ["flavorRef"],
          "additionalProperties": False}
NO_ARGUMENTS = {"type": ["null", "object"], "additionalProperties": False}
ACTIONS = ("resize", "confirmResize", "revertResize", "migrate")


def _moves():
    return current_app.extensions["mininova"]["move_service"]


def act(inst, ctxt, name, args):
    """The response of the move ``name`` on the server ``inst``."""
    if name == "resize":
        validation.validate(args, RESIZE, root=name)
        # An id, or an href whose last path segment is the id (as at create).
        flavor_ref = str(args["flavorRef"]).rstrip("/").rsplit("/", 1)[-1]
        try:
            _moves().resize(ctxt, inst.id, flavor_ref)
        except exception.FlavorNotFound as e:
            raise exception.ValidationError(field="resize.flavorRef", reason=e.message) from e
        return "", 202
    validation.validate(args, NO_ARGUMENTS, root=name)
    if name == "migrate":
        if not g.context.is_admin:
            raise exception.Forbidden("Policy doesn't allow os_compute_api:os-migrate-server:"
                                      "migrate_server to be performed.")
        _moves().migrate(ctxt, inst.id)
        return "", 202
    if name == "confirmResize":
        _moves().confirm_resize(ctxt, inst.id)
        return "", 204
    _moves().revert_resize(ctxt, inst.id)
    return "", 202
