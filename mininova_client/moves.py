"""``mininova vm resize|resize-confirm|resize-revert|migrate`` and
``mininova migration list``. Each command is ``f(client, args, out)``."""
from mininova_client import format as fmt
from mininova_client.api import quote
from mininova_client.wait import wait_vm

MIGRATION_HEADERS = ["ID", "VM", "Type", "Status", "Source", "Destination", "Old Flavor",
                     "New Flavor", "Created At", "Updated At"]


def _vm(client, ref):
    return client.get("/v1/vms/%s" % quote(ref))["vm"]


def _act(client, args, out, action, body, verb, expected):
    """POST the action; with --wait, follow it until the VM rests in
    ``expected`` (exit 3 if it failed: the action's message says why)."""
    vm = _vm(client, args.name)
    source = vm.get("host")
    resp = client.post("/v1/vms/%s/action" % quote(vm["id"]), {action: body})
    migration = (resp.body or {}).get("migration")
    if not args.wait:
        out.message("Request to %s VM %s accepted (request %s%s)." % (
            verb, vm["name"], resp.request_id,
            ", migration %s" % migration if migration else ""),
            {"request_id": resp.request_id, "migration": migration})
        return
    if expected is None:  # confirm or revert: the power the VM has
        expected = "SHUTOFF" if vm.get("power_state") == "shutdown" else "ACTIVE"
    vm = wait_vm(client, vm, action, resp.request_id, args.timeout, expected=expected)
    if out.json:
        fmt.dump_json({"vm": vm}, out.out)
    else:
        out.message("VM %s is %s on %s (was on %s)." % (vm["name"], vm["status"],
                                                       vm.get("host"), source))


def resize(client, args, out):
    _act(client, args, out, "resize", {"flavor": args.flavor}, "resize", "VERIFY_RESIZE")


def resize_confirm(client, args, out):
    _act(client, args, out, "confirm_resize", {}, "confirm the resize of", None)


def resize_revert(client, args, out):
    _act(client, args, out, "revert_resize", {}, "revert the resize of", None)


def migrate(client, args, out):
    body = {"host": args.host} if args.host else {}
    _act(client, args, out, "migrate", body, "migrate", "VERIFY_RESIZE")


def migration_list(client, args, out):
    if args.vm:
        body = client.get("/v1/vms/%s/migrations" % quote(args.vm))
    else:
        query = {k: v for k, v in (("host", args.host), ("status", args.status),
                                   ("type", args.type)) if v}
        body = client.get("/v1/migrations", query=query or None)
    out.listing(body, MIGRATION_HEADERS, [
        [m["id"], m["vm"], m["type"], m["status"], m["source"], m["destination"],
         m["old_flavor"], m["new_flavor"], m["created_at"], m["updated_at"]]
        for m in body["migrations"]])


def add_parsers(sub, vm, common, wait_opts):
    """The move commands under ``vm`` (its sub-parsers) and ``migration``."""
    p = vm.add_parser("resize", parents=[common, wait_opts],
                      help="resize a VM to another flavor (then resize-confirm or "
                           "resize-revert)")
    p.add_argument("name", help="VM name or id")
    p.add_argument("--flavor", required=True, help="the new flavor (name or id)")
    p.set_defaults(func=resize)
    for name, func, text in (("resize-confirm", resize_confirm,
                              "keep a resized or migrated VM (frees its old host)"),
                             ("resize-revert", resize_revert,
                              "take a resized or migrated VM back to its old host and "
                              "flavor")):
        p = vm.add_parser(name, parents=[common, wait_opts], help=text)
        p.add_argument("name", help="VM name or id")
        p.set_defaults(func=func)
    p = vm.add_parser("migrate", parents=[common, wait_opts],
                      help="cold-migrate a VM to another host (admin; then resize-confirm)")
    p.add_argument("name", help="VM name or id")
    p.add_argument("--host", help="the destination (default: the scheduler's choice)")
    p.set_defaults(func=migrate)
    tree = sub.add_parser("migration", help="moves of VMs between hosts").add_subparsers(
        dest="command", metavar="COMMAND", required=True)
    p = tree.add_parser("list", parents=[common],
                        help="moves, newest first (admin; --vm: one VM's, for its owner)")
    p.add_argument("--vm", help="only this VM's (name or id)")
    p.add_argument("--host", help="only moves from or to this host")
    p.add_argument("--status", help="only moves in this status")
    p.add_argument("--type", choices=["resize", "migration", "live-migration", "evacuation"])
    p.set_defaults(func=migration_list)
