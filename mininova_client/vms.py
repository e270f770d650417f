"""``mininova vm ...``: create, list, show, delete, power actions,
evacuate, console and the action timeline. Each command is ``f(client, args, out)``."""
import base64
import time
import urllib.parse
import uuid

from mininova_client import USAGE, CLIError
from mininova_client import format as fmt
from mininova_client import live_migration, moves, snapshots
from mininova_client.api import APIError, ConnectError, quote
from mininova_client.wait import wait_vm

POWER_ACTIONS = ("start", "stop", "reboot", "pause", "unpause", "suspend", "resume")


def _path(ref, *rest):
    return "/".join(["/v1/vms", quote(ref)] + [quote(r) for r in rest])


def _get(client, ref):
    return client.get(_path(ref))["vm"]


def _accepted(out, what, vm, request_id):
    out.message("Request to %s VM %s accepted (request %s)." % (what, vm["name"], request_id),
                {"request_id": request_id})


def _metadata(properties):
    """{key: value} of ``--property KEY=VALUE`` options."""
    metadata = {}
    for item in properties:
        key, sep, value = item.partition("=")
        if not sep:
            raise CLIError("error: --property %s: expected KEY=VALUE" % item, USAGE)
        metadata[key] = value
    return metadata


def _user_data(path):
    """The file's bytes as base64 text, as the API takes user_data."""
    try:
        with open(path, "rb") as f:
            return base64.b64encode(f.read()).decode("ascii")
    except OSError as e:
        raise CLIError("error: --user-data %s: %s" % (path, e.strerror), USAGE) from None


# A create is sent again (same key: never a second VM) when the API could not
# be reached or a load balancer found none answering: after these pauses.
CREATE_RETRY_PAUSES = (0.5, 1.0, 2.0)
RETRY_STATUSES = (502, 503, 504)


def _post_idempotent(client, body, key, pauses=CREATE_RETRY_PAUSES, sleep=time.sleep):
    for pause in (*pauses, None):
        try:
            return client.post("/v1/vms", body, headers={"X-Idempotency-Key": key})
        except (ConnectError, APIError) as e:
            if pause is None or (isinstance(e, APIError) and e.status not in RETRY_STATUSES):
                raise
        sleep(pause)
    raise AssertionError("unreachable")


def create(client, args, out):
    body = {"name": args.name, "image": args.image, "flavor": args.flavor}
    if args.group:
        body["group"] = args.group
    if args.key_name:
        body["key_name"] = args.key_name
    if args.user_data:
        body["user_data"] = _user_data(args.user_data)
    if args.property:
        body["metadata"] = _metadata(args.property)
    resp = _post_idempotent(client, body, args.idempotency_key or str(uuid.uuid4()))
    vm = resp.body["vm"]
    if args.wait:
        vm = wait_vm(client, vm, "create", resp.request_id, args.timeout)
        out.show({"vm": vm}, fmt.vm_pairs(vm))
    else:
        out.show(resp.body, fmt.vm_pairs(vm))


def list_all(client):
    """{"vms": [every VM of the project]}: GET /v1/vms page after page, as
    long as a page carries a "next" link (the API caps a page at its [api]
    max_limit). The link's query is sent to our own URL, so that a proxy
    in front of the API does not matter."""
    vms, query = [], None
    while True:
        body = client.get("/v1/vms", query=query)
        vms += body["vms"]
        following = [link["href"] for link in body.get("vms_links", ())
                     if link.get("rel") == "next"]
        if not following or not body["vms"]:
            return {"vms": vms}
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(following[0]).query))


def list_(client, args, out):
    body = list_all(client)
    out.listing(body, fmt.VM_HEADERS, [fmt.vm_row(vm) for vm in body["vms"]])


def show(client, args, out):
    body = client.get(_path(args.name))
    out.show(body, fmt.vm_pairs(body["vm"]))


def rename(client, args, out):
    vm = client.put(_path(args.name), {"name": args.new_name}).body["vm"]
    out.show({"vm": vm}, fmt.vm_pairs(vm))


def delete(client, args, out):
    vm = _get(client, args.name)  # its id: the name is free again once it is gone
    resp = client.delete(_path(vm["id"]))
    if args.wait:
        wait_vm(client, vm, "delete", resp.request_id, args.timeout)
        out.message("VM %s deleted." % vm["name"], {"request_id": resp.request_id})
    else:
        _accepted(out, "delete", vm, resp.request_id)


def power(client, args, out):
    """start|stop|reboot [--hard]|pause|unpause|suspend|resume NAME [--wait]."""
    action = args.action
    vm = _get(client, args.name)
    payload = {"type": "HARD" if args.hard else "SOFT"} if action == "reboot" else {}
    resp = client.post(_path(vm["id"], "action"), {action: payload})
    if args.wait:
        vm = wait_vm(client, vm, action, resp.request_id, args.timeout)
        if out.json:
            fmt.dump_json({"vm": vm}, out.out)
        else:
            out.message("VM %s is %s." % (vm["name"], vm["status"]))
    else:
        _accepted(out, action, vm, resp.request_id)


def evacuate(client, args, out):
    """evacuate NAME [--host H] [--admin-pass P] [--wait] (admin): rebuild
    elsewhere a VM whose host is down."""
    vm = _get(client, args.name)
    body = {k: v for k, v in (("host", args.host), ("admin_pass", args.admin_pass)) if v}
    resp = client.post(_path(vm["id"], "action"), {"evacuate": body})
    if not args.wait:
        _accepted(out, "evacuate", vm, resp.request_id)
        return
    source = vm.get("host")
    vm = wait_vm(client, vm, "evacuate", resp.request_id, args.timeout,
                 expected="SHUTOFF" if vm["status"] == "SHUTOFF" else "ACTIVE")
    if out.json:
        fmt.dump_json({"vm": vm}, out.out)
    else:
        out.message("VM %s is %s on %s (evacuated from %s)." % (
            vm["name"], vm["status"], vm.get("host"), source))


def rebuild(client, args, out):
    """rebuild NAME [--image IMAGE] [--name NEW] [--wait]: the VM's disk made
    anew from an image (default: the one it runs); it keeps its power state."""
    vm = _get(client, args.name)
    body = {"image": args.image or vm["image"]["id"]}
    if args.new_name:
        body["name"] = args.new_name
    resp = client.post(_path(vm["id"], "action"), {"rebuild": body})
    if not args.wait:
        _accepted(out, "rebuild", vm, resp.request_id)
        return
    vm = wait_vm(client, vm, "rebuild", resp.request_id, args.timeout,
                 expected="SHUTOFF" if vm["status"] == "SHUTOFF" else "ACTIVE")
    if out.json:
        fmt.dump_json({"vm": vm}, out.out)
    else:
        out.message("VM %s is %s, rebuilt from image %s." % (vm["name"], vm["status"],
                                                            body["image"]))


def console(client, args, out):
    body = client.get(_path(args.name, "console"), query={"lines": args.lines})
    if out.json:
        fmt.dump_json(body, out.out)
    else:
        text = body.get("output") or ""
        out.out.write(text if text.endswith("\n") or not text else text + "\n")


ACTION_HEADERS = ["Request ID", "Action", "Start Time", "Finish Time", "Result", "Message"]
EVENT_HEADERS = ["Event", "Host", "Start Time", "Duration (ms)", "Result", "Details"]


def actions(client, args, out):
    """The action timeline: all actions, or one with its events."""
    if not args.request_id:
        body = client.get(_path(args.name, "actions"))
        out.listing(body, ACTION_HEADERS, [
            [a["request_id"], a["action"], a["start_time"], a["finish_time"], a["result"],
             a["message"]] for a in body["actions"]])
        return
    body = client.get(_path(args.name, "actions", args.request_id))
    if out.json:
        fmt.dump_json(body, out.out)
        return
    action = body["action"]
    fmt.fields([(k, action.get(k)) for k in (
        "request_id", "action", "instance_id", "project_id", "user_id", "start_time",
        "finish_time", "duration_ms", "result", "message")], out.out)
    print(file=out.out)
    fmt.table(EVENT_HEADERS, [
        [e["event"], e["host"], e["start_time"], e["duration_ms"], e["result"], e["details"]]
        for e in action["events"]], out.out)


def add_parsers(sub, common, wait_opts):
    """The ``vm`` command tree; ``common``/``wait_opts``: parent parsers."""
    vm = sub.add_parser("vm", help="virtual machines").add_subparsers(
        dest="command", metavar="COMMAND", required=True)
    moves.add_parsers(sub, vm, common, wait_opts)
    live_migration.add_parsers(vm, common, wait_opts)
    p = vm.add_parser("create", parents=[common, wait_opts], help="boot a VM")
    p.add_argument("name")
    p.add_argument("--image", required=True, help="image name or id")
    p.add_argument("--flavor", required=True, help="flavor name or id")
    p.add_argument("--group", help="server group name or id")
    p.add_argument("--key-name", help="one of your keypairs: its public key goes onto the "
                                      "VM's config drive")
    p.add_argument("--user-data", metavar="FILE", help="a file for the config drive's "
                                                       "user_data (e.g. a cloud-init script)")
    p.add_argument("--property", action="append", default=[], metavar="KEY=VALUE",
                   help="a metadata item (repeat for more)")
    p.add_argument("--idempotency-key", metavar="KEY",
                   help="sent as X-Idempotency-Key (default: a new UUID): the create is "
                        "retried with it when the API cannot be reached or answers "
                        "502/503/504, and the same key never makes a second VM; give "
                        "the same KEY again to repeat a create whose outcome you missed")
    p.set_defaults(func=create)
    p = vm.add_parser("rename", parents=[common], help="rename a VM")
    p.add_argument("name", help="VM name or id")
    p.add_argument("new_name")
    p.set_defaults(func=rename)
    vm.add_parser("list", parents=[common], help="list VMs").set_defaults(func=list_)
    p = vm.add_parser("show", parents=[common], help="show a VM")
    p.add_argument("name", help="VM name or id")
    p.set_defaults(func=show)
    p = vm.add_parser("delete", parents=[common, wait_opts], help="delete a VM")
    p.add_argument("name", help="VM name or id")
    p.set_defaults(func=delete)
    for action in POWER_ACTIONS:
        p = vm.add_parser(action, parents=[common, wait_opts], help="%s a VM" % action)
        p.add_argument("name", help="VM name or id")
        if action == "reboot":
            p.add_argument("--hard", action="store_true", help="reset instead of ACPI reboot")
        p.set_defaults(func=power, action=action, hard=False)
    p = vm.add_parser("evacuate", parents=[common, wait_opts],
                      help="rebuild elsewhere a VM whose host is down (admin)")
    p.add_argument("name", help="VM name or id")
    p.add_argument("--host", help="the destination (default: the scheduler's choice)")
    p.add_argument("--admin-pass", help="echoed back (mininova sets no guest password)")
    p.set_defaults(func=evacuate)
    p = vm.add_parser("rebuild", parents=[common, wait_opts],
                      help="make the VM's disk anew from an image, on its host")
    p.add_argument("name", help="VM name or id")
    p.add_argument("--image", help="image name or id (default: the VM's own)")
    p.add_argument("--name", dest="new_name", help="a new name for the VM")
    p.set_defaults(func=rebuild)
    snapshots.add_parser(vm, common, wait_opts)
    p = vm.add_parser("console", parents=[common], help="tail of the serial console")
    p.add_argument("name", help="VM name or id")
    p.add_argument("--lines", type=int, default=100, help="how many lines (default 100)")
    p.set_defaults(func=console)
    p = vm.add_parser("actions", parents=[common],
                      help="the VM's action timeline (one action with its events)")
    p.add_argument("name", help="VM name or id (by id also after deletion)")
    p.add_argument("request_id", nargs="?", help="one action: its request id")
    p.set_defaults(func=actions)
