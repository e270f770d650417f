"""``POST /servers/{id}/action`` at 2.1: the power actions, lock, rebuild,
live migration and the console.

The server is looked up first, so an unknown server is a 404 whatever the
action (tempest asks for rebuild, forceDelete, restore on missing servers);
then the body must name exactly one action this surface carries out (else
400 "There is no such action"), with Nova's arguments (400). A move that the
server's state does not allow now is VMService's 409.

- ``os-stop``, ``os-start``, ``pause``, ``unpause``, ``suspend``,
  ``resume``: value ``null`` or ``{}`` (what OSC and the SDK send); 202;
- ``reboot``: ``{"type": "SOFT"|"HARD"}``, required, any case; 202;
- ``lock``, ``unlock`` (null or {}): 202; a locked server refuses a
  non-admin's actions, metadata changes and delete (VMService's 409);
- ``rebuild``: ``{"imageRef", "name"?, "metadata"?, "adminPass"?,
  "preserve_ephemeral"?}``; 202 with the basic view of the server (status
  REBUILD) and ``adminPass`` (the given one, else a random one: the guest
  is not told, as mininova injects no password);
- ``evacuate`` (admin): server_evacuate.py;
- ``os-migrateLive`` (admin, else 403): ``{"host": null|name,
  "block_migration": bool, "disk_over_commit": bool}``, all required (2.1);
  202; block_migration false is a 400 (no shared instances_path here);
  ``disk_over_commit`` is accepted and ignored (as Nova's libvirt driver
  does since it checks disk space itself). The abort is 2.24's DELETE
  ``/servers/{id}/migrations/{id}``, not at 2.1: /v1 has it;
- ``createImage``: ``{"name", "metadata"?}``; 202, the image's URL in
  ``Location``; ``createBackup`` likewise, with a rotation (server_images.py);
- ``resize``, ``confirmResize``, ``revertResize``, ``migrate`` (admin):
  server_moves.py;
- ``os-getConsoleOutput``: ``{"length": N}`` (an integer or its string,
  ``null`` or -1: all of it); 200 ``{"output"}``, Nova's tail of the log
  (``console_tail``)."""
import re
import secrets

from flask import jsonify

from common import exception
from nova_api import validation
from nova_api.openstack.compute import (params, resource, server_evacuate, server_images,
                                        server_lookup, server_moves, servers)

bp = resource.blueprint("compute_server_actions", __name__)

NO_ARGUMENTS = {"type": ["null", "object"], "additionalProperties": False}
REBOOT = {"type": "object",
          "properties": {"type": {"type": "string", "maxLength": 4}},
          "required": ["type"],
          "additionalProperties": False}
# nova/api/openstack/compute/schemas/console_output.py
CONSOLE_OUTPUT = {"type": "object",
                  "properties": {"length": {"type": ["integer", "string", "null"],
                                            "pattern": "^-?[0-9]{1,18}$", "minimum": -1}},
                  "additionalProperties": False}
REBUILD_ARGS = {"type": "object",
                "properties": {"imageRef": {"type": "string", "minLength": 1,
                                            "maxLength": 2048},
                               "name": params.NAME,
                               "metadata": {"type": "object"},
                               "adminPass": {"type": "string", "maxLength": 255},
                               "preserve_ephemeral": params.BOOLEAN},
                "required": ["imageRef"],
                "additionalProperties": False}
# nova/api/openstack/compute/schemas/migrate_server.py, 2.1 (admin only).
MIGRATE_LIVE = {"type": "object",
                "properties": {"host": {"type": ["string", "null"], "minLength": 1,
                                        "maxLength": 255},
                               "block_migration": params.BOOLEAN,
                               "disk_over_commit": params.BOOLEAN},
                "required": ["block_migration", "disk_over_commit", "host"],
                "additionalProperties": False}
# Nova's power actions -> VMService's.
POWER_ACTIONS = {"os-stop": "stop", "os-start": "start", "pause": "pause",
                 "unpause": "unpause", "suspend": "suspend", "resume": "resume"}
LOCK_ACTIONS = ("lock", "unlock")
# The most lines asked of the compute for "all of it" (it reads at most the
# log's last MiB anyway).
ALL_LINES = 2 ** 31 - 1
# What Nova strips from console output (control characters but \t and \n).
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f]")


def _one_action(body):
    """(name, value) of an action body; 400 unless it is one JSON object
    with exactly one member."""
    if not isinstance(body, dict) or len(body) != 1:
        raise exception.Invalid(reason="Malformed request body: an action body is an object "
                                "with exactly one member, the action")
    return next(iter(body.items()))


def _no_such_action(name):
    shown = name if len(name) <= 64 else name[:64] + "..."
    return exception.Invalid("There is no such action: %s" % shown)


def console_tail(log, length):
    """Nova's ``_tail_log``: the last ``length`` pieces of the log split at
    newlines (None: all of it; 0: nothing), without control characters."""
    if length == 0:
        return ""
    if length is not None:
        log = "\n".join(log.split("\n")[-length:])
    return _UNPRINTABLE.sub("", log)


def _console_length(args):
    length = args.get("length")
    if length is None:
        return None
    length = int(length)
    if length < -1:
        raise exception.ValidationError(field="os-getConsoleOutput.length",
                                        reason="must be -1 or greater")
    return None if length == -1 else length


@bp.post("/servers/<server_id>/action")
def action(server_id):
    name, args = _one_action(validation.json_body({}))
    inst = server_lookup.server(server_id)
    service, ctxt = server_lookup.vm_service(), server_lookup.acting_context(inst)
    if name in POWER_ACTIONS:
        validation.validate(args, NO_ARGUMENTS, root=name)
        service.action(ctxt, inst.id, POWER_ACTIONS[name])
        return "", 202
    if name in LOCK_ACTIONS:
        validation.validate(args, NO_ARGUMENTS, root=name)
        getattr(service, name)(ctxt, inst.id)
        return "", 202
    if name == "rebuild":
        validation.validate(args, REBUILD_ARGS, root=name)
        return _rebuild(inst, ctxt, args)
    if name == "evacuate":
        return server_evacuate.evacuate(inst, ctxt, args)
    if name == "createImage":
        return server_images.create_image(inst, ctxt, args)
    if name == "createBackup":
        return server_images.create_backup(inst, ctxt, args)
    if name in server_moves.ACTIONS:
        return server_moves.act(inst, ctxt, name, args)
    if name == "reboot":
        validation.validate(args, REBOOT, root=name)
        kind = args["type"].lower()
        if kind not in ("soft", "hard"):
            raise exception.ValidationError(field="reboot.type", reason="must be SOFT or HARD")
        service.action(ctxt, inst.id, "reboot", hard=kind == "hard")
        return "", 202
    if name == "os-migrateLive":
        validation.validate(args, MIGRATE_LIVE, root=name)
        block = params.boolean("os-migrateLive.block_migration", args["block_migration"])
        server_lookup.live_migrations().start(ctxt, inst.id, host=args["host"],
                                              block_migration=block)
        return "", 202
    if name == "os-getConsoleOutput":
        validation.validate(args, CONSOLE_OUTPUT, root=name)
        length = _console_length(args)
        # A log ending in a newline splits into one empty piece more than it has lines.
        lines = ALL_LINES if length is None else min(length + 1, ALL_LINES)
        log = service.get_console_output(ctxt, inst.id, lines)
        return jsonify({"output": console_tail(log or "", length)})
    raise _no_such_action(name)


def _rebuild(inst, ctxt, args):
    # An image id, or an href whose last path segment is the id (as at create).
    image_ref = args["imageRef"].rstrip("/").rsplit("/", 1)[-1]
    if not image_ref:
        raise exception.ValidationError(field="rebuild.imageRef", reason="names no image")
    try:
        server_lookup.vm_service().rebuild(
            ctxt, inst.id, image_ref, metadata=args.get("metadata"),
            **({"name": args["name"]} if "name" in args else {}))
    except exception.ImageNotFound as e:
        # What the body names must exist: Nova answers 400, not 404.
        raise exception.ValidationError(field="rebuild.imageRef", reason=e.message) from e
    with server_lookup.db().transaction() as s:
        inst = server_lookup.server_in(s, inst.id)
        body = servers.views_for(s, [inst]).basic(inst)
    body["adminPass"] = args.get("adminPass") or secrets.token_urlsafe(9)
    response = jsonify({"server": body})
    response.status_code = 202
    return response
