"""``mininova vm live-migrate NAME [--host H] [--wait]`` and ``mininova vm
live-migrate-abort NAME`` (admin). ``--wait`` follows the migration record
(``GET /v1/vms/<id>/migrations``): its status and the bytes of memory and
disk copied, until it ended; exit 3 when it ended otherwise than completed
(the VM then still runs where it was)."""
import time

from mininova_client import WAIT_ERROR, WAIT_TIMEOUT, CLIError
from mininova_client import format as fmt
from mininova_client.api import quote
from mininova_client.wait import FIRST_INTERVAL, MAX_INTERVAL, Progress

ENDED = ("completed", "error", "cancelled", "failed")
MIB = 1024 * 1024


def _vm(client, ref):
    return client.get("/v1/vms/%s" % quote(ref))["vm"]


def _copied(m):
    """"memory 54/128 MiB, disk 0/0 MiB" of a migration record, or None."""
    parts = []
    for kind in ("memory", "disk"):
        done, total = m.get("%s_processed_bytes" % kind), m.get("%s_total_bytes" % kind)
        if total:
            parts.append("%s %d/%d MiB" % (kind, (done or 0) // MIB, total // MIB))
    return ", ".join(parts) or None


def live_migrate(client, args, out):
    vm = _vm(client, args.name)
    source = vm.get("host")
    body = {"host": args.host} if args.host else {}
    resp = client.post("/v1/vms/%s/action" % quote(vm["id"]), {"live_migrate": body})
    migration = (resp.body or {}).get("migration")
    if not args.wait:
        out.message("Request to live-migrate VM %s accepted (request %s, migration %s)." % (
            vm["name"], resp.request_id, migration),
            {"request_id": resp.request_id, "migration": migration})
        return
    record = wait_migration(client, vm, migration, args.timeout)
    vm = _vm(client, vm["id"])
    if record["status"] != "completed":
        actions = client.get("/v1/vms/%s/actions/%s" % (quote(vm["id"]),
                                                        quote(resp.request_id)))
        why = (actions.get("action") or {}).get("message") or "(no message recorded)"
        raise CLIError("error: live migration %s of VM %s %s: %s; it is %s on %s" % (
            migration, vm["name"], "was cancelled" if record["status"] == "cancelled"
            else "failed", why, vm["status"], vm.get("host")), WAIT_ERROR)
    if out.json:
        fmt.dump_json({"vm": vm, "migration": record}, out.out)
    else:
        out.message("VM %s is %s on %s (live-migrated from %s)." % (
            vm["name"], vm["status"], vm.get("host"), source))


def wait_migration(client, vm, migration, timeout, stream=None, tty=None, sleep=time.sleep):
    """The VM's migration record ``migration`` once it ended (and the VM has
    no task left); CLIError (exit 4) at the deadline."""
    progress = Progress(vm["name"], stream, tty)
    deadline = time.monotonic() + timeout
    interval = FIRST_INTERVAL
    try:
        while True:
            records = client.get("/v1/vms/%s/migrations" % quote(vm["id"]))["migrations"]
            record = next((m for m in records if m["id"] == migration), None)
            status = record["status"] if record else "accepted"
            current = _vm(client, vm["id"])
            progress.update("%s, migration %s" % (current["status"], status),
                            step=_copied(record) if record else None)
            if status in ENDED and current.get("task_state") is None:
                return record
            if time.monotonic() >= deadline:
                raise CLIError("error: timed out after %g s waiting for live migration %s of "
                               "VM %s (now %s)" % (timeout, migration, vm["name"], status),
                               WAIT_TIMEOUT)
            sleep(max(0.0, min(interval, deadline - time.monotonic())))
            interval = min(interval * 1.5, MAX_INTERVAL)
    finally:
        progress.end()


def live_migrate_abort(client, args, out):
    vm = _vm(client, args.name)
    resp = client.post("/v1/vms/%s/action" % quote(vm["id"]), {"live_migrate_abort": {}})
    migration = (resp.body or {}).get("migration")
    out.message("Abort of live migration %s of VM %s asked (request %s)." % (
        migration, vm["name"], resp.request_id),
        {"request_id": resp.request_id, "migration": migration})


def add_parsers(vm, common, wait_opts):
    """The commands under ``vm`` (its sub-parsers)."""
    p = vm.add_parser("live-migrate", parents=[common, wait_opts],
                      help="move a running VM to another host, disk included (admin)")
    p.add_argument("name", help="VM name or id")
    p.add_argument("--host", help="the destination (default: the scheduler's choice)")
    p.set_defaults(func=live_migrate)
    p = vm.add_parser("live-migrate-abort", parents=[common],
                      help="stop a live migration while it copies; the VM stays (admin)")
    p.add_argument("name", help="VM name or id")
    p.set_defaults(func=live_migrate_abort)
