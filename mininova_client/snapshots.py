"""``mininova vm snapshot VM NAME [--property K=V] [--wait]``: a new image of
the VM's disk (POST /v1/vms/<id>/action {"snapshot"}).

``--wait`` follows the image until it is active and the VM has no task left
(the VM's host uploads it), with the VM's step in progress on stderr as the
other waits show it; exit 3 when the snapshot failed (the image is gone:
the VM's fault or the action's message says why), 4 on timeout."""
import time

from mininova_client import WAIT_ERROR, WAIT_TIMEOUT, CLIError
from mininova_client.api import APIError, ConnectError, quote
from mininova_client.format import fault
from mininova_client.resources import IMAGE_FIELDS
from mininova_client.wait import FIRST_INTERVAL, MAX_INTERVAL, Progress, _action


def snapshot(client, args, out):
    from mininova_client import vms  # the VM helpers (vms imports this module)
    vm = vms._get(client, args.vm)
    body = {"name": args.name}
    if args.property:
        body["metadata"] = vms._metadata(args.property)
    resp = client.post("/v1/vms/%s/action" % quote(vm["id"]), {"snapshot": body})
    image = resp.body["image"]
    if args.wait:
        image = wait_image(client, vm, image, resp.request_id, args.timeout)
    elif not out.json:
        out.message("Snapshot of VM %s accepted: image %s (request %s)." % (
            vm["name"], image["id"], resp.request_id), {"request_id": resp.request_id})
        return
    out.show({"image": image}, [(k, image.get(k)) for k in IMAGE_FIELDS])


def wait_image(client, vm, image, request_id=None, timeout=300.0, stream=None, tty=None,
               sleep=time.sleep):
    """Wait until ``image`` (the snapshot of ``vm``) is active and the VM
    idle; the image then. CLIError (exit 3) once the image is gone or the
    snapshot failed, (exit 4) at the deadline."""
    progress = Progress("%s -> image %s" % (vm["name"], image["name"]), stream, tty)
    deadline = time.monotonic() + timeout
    interval, current = FIRST_INTERVAL, vm
    try:
        while True:
            try:
                image = client.get("/v1/images/%s" % quote(image["id"]))["image"]
                current = _vm_now(client, vm)
            except APIError as e:
                if e.status == 404:
                    raise CLIError("error: snapshot of VM %s failed: %s%s" % (
                        vm["name"], _why(client, vm, request_id), _suffix(request_id)),
                        WAIT_ERROR) from None
                if e.status < 500:
                    raise
                progress.update("API unavailable, retrying")
            except ConnectError:
                progress.update("API unavailable, retrying")
            else:
                _, step = _action(client, vm["id"], request_id)
                task = current.get("task_state") if current else None
                progress.update("image %s" % image["status"], task, step)
                if image["status"] == "active" and task is None:
                    return image
                if image["status"] in ("killed", "deleted"):
                    raise CLIError("error: snapshot of VM %s failed: image %s%s" % (
                        vm["name"], image["status"], _suffix(request_id)), WAIT_ERROR)
            if time.monotonic() >= deadline:
                raise CLIError("error: timed out after %g s waiting for image %s to be active "
                               "(now %s)%s" % (timeout, image["id"], image["status"],
                                               _suffix(request_id)), WAIT_TIMEOUT)
            sleep(max(0.0, min(interval, deadline - time.monotonic())))
            interval = min(interval * 1.5, MAX_INTERVAL)
    finally:
        progress.end()


def _vm_now(client, vm):
    """The VM now, or None once it is gone (deleted meanwhile)."""
    try:
        return client.get("/v1/vms/%s" % quote(vm["id"]))["vm"]
    except APIError as e:
        if e.status == 404:
            return None
        raise


def _why(client, vm, request_id):
    try:
        current = _vm_now(client, vm)
    except (APIError, ConnectError):
        current = None
    if current is None:
        return "the VM was deleted"
    action, _ = _action(client, vm["id"], request_id)
    return fault(current) or action.get("message") or "the image was deleted"


def _suffix(request_id):
    return " (request %s)" % request_id if request_id else ""


def add_parser(vm, common, wait_opts):
    p = vm.add_parser("snapshot", parents=[common, wait_opts],
                      help="a new image of the VM's disk (--wait: until it is active)")
    p.add_argument("vm", help="VM name or id")
    p.add_argument("name", help="the new image's name")
    p.add_argument("--property", action="append", default=[], metavar="KEY=VALUE",
                   help="an image property (repeat for more)")
    p.set_defaults(func=snapshot)
