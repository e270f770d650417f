import urllib.parse

from flask import Blueprint, current_app, g, jsonify, request

from common.db import api as db_api
from common import exception
from nova_api import idempotency, validation, views, vm_fields

bp = Blueprint("vms", __name__, url_prefix="/v1/vms")
bp.before_request(validation.check_path_params)

CREATE_SCHEMA = {
    "type": "object",
    "properties": {
        "name": validation.NAME,
        "image": validation.REF,
        "flavor": validation.REF,
        "group": validation.REF,
        "key_name": dict(validation.REF, description="One of the caller's keypairs: its "
                         "public key goes onto the VM's config drive."),
        "user_data": {"type": "string", "maxLength": vm_fields.USER_DATA_MAX,
                      "pattern": vm_fields.USER_DATA_PATTERN, "contentEncoding": "base64",
                      "description": "Base64 text, on the VM's config drive as user_data."},
        "metadata": {"type": "object",
                     "propertyNames": {"pattern": vm_fields.METADATA_KEY_PATTERN},
                     "additionalProperties": {"type": "string",
                                              "maxLength": vm_fields.METADATA_VALUE_MAX},
                     "description": "Key/value strings, on the VM's config drive as meta; "
                                    "more items than the project's metadata_items quota: "
                                    "403."},
    },
    "required": ["name", "image", "flavor"],
    "additionalProperties": False,
}

# PUT /v1/vms/<ref>: a new name (unique as at create: [api] unique_vm_name_scope).
UPDATE_SCHEMA = {
    "type": "object",
    "properties": {"name": validation.NAME},
    "required": ["name"],
    "additionalProperties": False,
}

_NO_ARGS = {"type": "object", "additionalProperties": False}
ACTION_ARGS = {
    "stop": _NO_ARGS, "start": _NO_ARGS, "pause": _NO_ARGS, "unpause": _NO_ARGS,
    "suspend": _NO_ARGS, "resume": _NO_ARGS,
    "reboot": {"type": "object", "additionalProperties": False,
               "properties": {"type": {"enum": ["soft", "hard", "SOFT", "HARD"]}}},
    # Admin: rebuild elsewhere a VM whose host is down (nova_api/evacuation.py).
    "evacuate": {"type": "object", "additionalProperties": False,
                 "properties": {"host": dict(validation.REF, description="The destination "
                                             "(default: the scheduler's choice)."),
                                "admin_pass": {"type": "string", "maxLength": 255}}},
    "snapshot": {"type": "object", "additionalProperties": False, "required": ["name"],
                 "description": "A new image of the VM's disk: 202 with the image "
                                "(queued, then active once the VM's host uploaded it).",
                 "properties": {
                     "name": {"type": "string", "minLength": 1, "maxLength": 255,
                              "pattern": validation.TEXT_PATTERN},
                     "metadata": {"type": "object",
                                  "additionalProperties": {"type": "string",
                                                           "maxLength": 65535},
                                  "description": "The image's extra properties."}}},
    # Admin only (403): the VM moves to another host while it runs.
    "live_migrate": {
        "type": "object", "additionalProperties": False,
        "properties": {
            "host": dict(validation.REF, type=["string", "null"],
                         description="The destination (a compute host, not the VM's); "
                                     "absent or null: the scheduler's choice."),
            "block_migration": {"enum": ["auto", True], "default": "auto",
                                "description": "The disk is always copied (hosts share "
                                               "no instances_path)."}}},
    "live_migrate_abort": _NO_ARGS,
    # Nova's rebuild: the VM's disk made anew from an image (its own or another),
    # on its host; id, MAC and fixed IP kept; a stopped VM stays stopped.
    "rebuild": {"type": "object", "additionalProperties": False, "required": ["image"],
                "properties": {"image": dict(validation.REF, description="The image "
                                             "(id or name) to rebuild from."),
                               "name": dict(validation.NAME, description="A new name.")}},   # admin only: stop the copy; the VM stays where it was
    # Resize and cold migration (nova_api/move_service.py): 202, the VM goes
    # RESIZE, then VERIFY_RESIZE until confirm_resize or revert_resize.
    "resize": {"type": "object", "additionalProperties": False, "required": ["flavor"],
               "properties": {"flavor": dict(validation.REF, description="The new flavor "
                                             "(id or name); its disk may not be smaller.")}},
    "confirm_resize": _NO_ARGS, "revert_resize": _NO_ARGS,
    "migrate": {"type": "object", "additionalProperties": False,
                "description": "Admin: a cold migration to another host.",
                "properties": {"host": dict(validation.REF, description="The destination "
                                            "(default: the scheduler's choice).")}},
}
MIGRATION_ACTIONS = ("live_migrate", "live_migrate_abort")
# Exactly one action, with its arguments: {"stop": {}}, {"reboot": {"type": "hard"}}.
ACTION_SCHEMA = {
    "type": "object",
    "properties": ACTION_ARGS,
    "additionalProperties": False,
    "minProperties": 1,
    "maxProperties": 1,
}
ACTIONS = tuple(ACTION_ARGS)
# GET /v1/vms?limit=N&marker=<id>: pages as in Nova.
LIST_PARAMS = {
    "type": "object",
    "properties": {
        "limit": {"type": "integer", "minimum": 1, "maximum": 2 ** 31 - 1,
                  "description": "At most this many VMs (and never more than the "
                                 "[api] max_limit option); a 'next' link in vms_links "
                                 "when more remain."},
        "marker": {"type": "string", "minLength": 1, "maxLength": 255,
                   "pattern": validation.REF_PATTERN,
                   "description": "Id of the last VM of the previous page (any of the "
                                  "project's VMs, also one deleted since); the page "
                                  "starts after it. 400 if there is no such VM."},
    },
    "additionalProperties": True,
}
# GET /v1/vms/<ref>/console?lines=N
CONSOLE_PARAMS = {
    "type": "object",
    "properties": {"lines": {"type": "integer", "minimum": 1, "maximum": 10000,
                             "default": 100}},
    "additionalProperties": True,
}


def _ext():
    return current_app.extensions["mininova"]


def _vm_service():
    return _ext()["vm_service"]


def _lookups():
    return _ext()["vm_service"].lookups


_VM_LIST = views.VmListEncoder()


def _response(text, status=200):
    return current_app.response_class(text + "\n", status=status, mimetype="application/json")


def _json_response(body, status=200):
    return _response(views.ENCODER.encode(body), status)


def _vm_body(vm):
    """{"vm": ...} of an ORM object or a dict of its fields."""
    lookups = _lookups()
    image_id, flavor_id = ((vm["image_id"], vm["flavor_id"]) if isinstance(vm, dict)
                           else (vm.image_id, vm.flavor_id))
    return {"vm": views.vm(vm, lookups.image_names((image_id,)),
                           lookups.flavor_names((flavor_id,)))}


def _vm_detail(vm, metadata):
    """``_vm_body`` plus what only one VM's answers carry: its keypair's
    name and its metadata."""
    body = _vm_body(vm)
    body["vm"]["key_name"] = vm["key_name"] if isinstance(vm, dict) else vm.key_name
    body["vm"]["metadata"] = metadata
    return body


@bp.post("")
def create():
    key = idempotency.parse_key(request.headers.get(idempotency.HEADER))
    body = validation.json_body(CREATE_SCHEMA)
    vm = _vm_service().create(g.context, body["name"], body["image"], body["flavor"],
                              group_ref=body.get("group"), metadata=body.get("metadata"),
                              key_name=body.get("key_name"), user_data=body.get("user_data"),
                              idempotency_key=key,
                              request_hash=idempotency.body_hash(body) if key else "")
    if getattr(vm, "replayed", False):  # the key's first create made it: same answer
        response = _json_response(_vm_detail(vm, vm.metadata_items), 202)
        response.headers["X-Idempotent-Replayed"] = "true"
    else:
        response = _json_response(_vm_detail(vm, vm["metadata"]), 202)
    vm_id = vm.id if hasattr(vm, "id") else vm["id"]
    response.headers["Location"] = "/v1/vms/%s" % vm_id
    return response


def _next_link(last_id):
    query = {k: v for k, v in request.args.items() if k != "marker"}
    query["marker"] = last_id
    return request.url_root + "v1/vms?" + urllib.parse.urlencode(query)


@bp.get("")
def index():
    params = validation.query_params(LIST_PARAMS)
    max_limit = _ext()["conf"].api.max_limit
    limit = min(params.get("limit", max_limit), max_limit)
    rows, more = _vm_service().list(g.context, views.VM_FIELDS, limit, params.get("marker"))
    lookups = _lookups()
    images = lookups.image_names({r.image_id for r in rows})
    flavors = lookups.flavor_names({r.flavor_id for r in rows})
    chunks = _VM_LIST.chunks(rows, images, flavors)
    chunks.insert(0, b'{"vms":')
    if more:
        # As Nova: where the next page starts, while more remain.
        chunks.append(b',"vms_links":' + views.ENCODER.encode(
            [{"rel": "next", "href": _next_link(rows[-1].id)}]).encode())
    chunks.append(b"}\n")
    # One join: the body is the only full copy of the list the API makes.
    return current_app.response_class(b"".join(chunks), mimetype="application/json")


@bp.get("/<ref>")
def show(ref):
    vm = _vm_service().get(g.context, ref)
    return _json_response(_vm_detail(vm, _ext()["vm_metadata"].get(g.context, vm.id)))


@bp.put("/<ref>")
def update(ref):
    body = validation.json_body(UPDATE_SCHEMA)
    vm = _vm_service().update(g.context, ref, name=body["name"])
    return _json_response(_vm_detail(vm, _ext()["vm_metadata"].get(g.context, vm.id)))


@bp.delete("/<ref>")
def delete(ref):
    _vm_service().delete(g.context, ref)
    return "", 202


@bp.post("/<ref>/action")
def action(ref):
    body = validation.json_body({"type": "object"})
    if len(body) != 1 or next(iter(body)) not in ACTIONS:
        raise exception.ValidationError(
            field="(body)", reason="must be exactly one of %s" % ", ".join(
                '{"%s": {}}' % a for a in ACTIONS))
    name = next(iter(body))
    validation.validate(body, ACTION_SCHEMA)
    if name == "evacuate":
        args = body["evacuate"]
        accepted = _ext()["evacuations"].evacuate(g.context, ref, host=args.get("host"),
                                                  admin_pass=args.get("admin_pass"))
        return _json_response({"migration": accepted["migration"],
                               "admin_pass": accepted["admin_pass"]}, 202)
    if name == "snapshot":
        image = _ext()["snapshot_service"].snapshot(g.context, ref, body[name]["name"],
                                                    body[name].get("metadata"))
        response = _json_response({"image": views.image(image)}, 202)
        response.headers["Location"] = "/v1/images/%s" % image.id
        return response
    if name == "rebuild":
        args = body["rebuild"]
        vm = _vm_service().rebuild(g.context, ref, args["image"],
                                   **({"name": args["name"]} if "name" in args else {}))
        return _json_response(_vm_body(vm), 202)
    if name in MIGRATION_ACTIONS:
        return _migration_action(ref, name, body[name])
    if name in MOVE_ACTIONS:
        return _move(ref, name, body[name])
    hard = name == "reboot" and body["reboot"].get("type", "soft").lower() == "hard"
    _vm_service().action(g.context, ref, name, hard=hard)
    return "", 202


def _migration_action(ref, name, args):
    service = _ext()["live_migrations"]
    if name == "live_migrate_abort":
        return _json_response({"migration": service.abort(g.context, ref)}, 202)
    _vm, migration = service.start(g.context, ref, host=args.get("host"),
                                   block_migration=args.get("block_migration", "auto"))
    return _json_response({"migration": migration}, 202)


@bp.delete("/<ref>/migrations/<migration_id>")
def abort_migration(ref, migration_id):
    """Abort the VM's live migration ``migration_id`` while it copies (admin)."""
    _ext()["live_migrations"].abort(g.context, ref, migration_id)
    return "", 202


MOVE_ACTIONS = ("resize", "confirm_resize", "revert_resize", "migrate")


def _move(ref, name, args):
    moves = _ext()["move_service"]
    if name == "resize":
        return _json_response({"migration": moves.resize(g.context, ref, args["flavor"])}, 202)
    if name == "migrate":
        if not g.context.is_admin:
            raise exception.Forbidden("Migrating a VM needs the admin role.")
        return _json_response({"migration": moves.migrate(g.context, ref, args.get("host"))},
                              202)
    getattr(moves, name)(g.context, ref)
    return "", 202


@bp.get("/<ref>/console")
def console(ref):
    """The tail of the VM's serial console (like Nova's os-getConsoleOutput)."""
    lines = validation.query_params(CONSOLE_PARAMS)["lines"]
    output = _vm_service().get_console_output(g.context, ref, lines)
    return jsonify({"output": output})
