"""``mininova image|flavor|host|service|server-group|quota ...``.
Each command is ``f(client, args, out)``."""
import os

from mininova_client import USAGE, CLIError
from mininova_client import format as fmt
from mininova_client.api import quote

# -- images -----------------------------------------------------------------

IMAGE_HEADERS = ["ID", "Name", "Status", "Disk Format", "Size", "Min RAM", "Min Disk"]
IMAGE_FIELDS = ("id", "name", "status", "disk_format", "size", "checksum", "min_ram",
                "min_disk", "created_at")


def image_list(client, args, out):
    body = client.get("/v1/images")
    out.listing(body, IMAGE_HEADERS, [[i["id"], i["name"], i["status"], i["disk_format"],
                                       i["size"], i["min_ram"], i["min_disk"]]
                                      for i in body["images"]])


def image_show(client, args, out):
    body = client.get("/v1/images/%s" % quote(args.name))
    out.show(body, [(k, body["image"].get(k)) for k in IMAGE_FIELDS])


def image_add(client, args, out):
    """POST /v1/images?name=..., the file streamed as the body (admin)."""
    if not os.path.isfile(args.file) or not os.access(args.file, os.R_OK):
        raise CLIError("error: cannot read image file %s" % args.file, USAGE)
    query = {"name": args.name, "min_ram": args.min_ram, "min_disk": args.min_disk}
    body = client.upload("/v1/images", args.file, query=query).body
    out.show(body, [(k, body["image"].get(k)) for k in IMAGE_FIELDS])


# -- flavors ----------------------------------------------------------------

def flavor_list(client, args, out):
    body = client.get("/v1/flavors")
    out.listing(body, ["ID", "Name", "vCPUs", "RAM", "Disk"],
                [[f["id"], f["name"], f["vcpus"], f["ram"], f["disk"]] for f in body["flavors"]])


def flavor_create(client, args, out):
    raise CLIError("error: the API cannot create flavors yet; on the controller run\n"
                   "  mininova-manage flavor create NAME --vcpus N --ram MB --disk GB", USAGE)


# -- hosts and services (admin) -----------------------------------------------

def _vm_names(vms):
    return "\n".join("%s (%s)" % (v["name"], v["vm_state"]) for v in vms)


def host_list(client, args, out):
    body = client.get("/v1/hosts")
    out.listing(body, ["Name", "State", "Status", "Hypervisor", "vCPUs", "RAM MB", "Disk GB",
                       "VMs"],
                [[h["name"], h["state"], h["status"], h["hypervisor_type"],
                  fmt.usage(h["vcpus"]), fmt.usage(h["memory_mb"]), fmt.usage(h["disk_gb"]),
                  len(h["vms"])] for h in body["hosts"]])


def host_show(client, args, out):
    body = client.get("/v1/hosts/%s" % quote(args.name))
    h = body["host"]
    out.show(body, [("name", h["name"]), ("state", h["state"]), ("status", h["status"]),
                    ("hypervisor_type", h["hypervisor_type"]),
                    ("vcpus", fmt.resource(h["vcpus"])),
                    ("memory_mb", fmt.resource(h["memory_mb"])),
                    ("disk_gb", fmt.resource(h["disk_gb"])), ("vms", _vm_names(h["vms"]))])


SERVICE_HEADERS = ["ID", "Binary", "Host", "Status", "State", "Last Heartbeat",
                   "Disabled Reason"]


def _service_row(s):
    return [s["id"], s["binary"], s["host"], s["status"], s["state"], s["last_heartbeat"],
            s["disabled_reason"]]


def service_list(client, args, out):
    body = client.get("/v1/services")
    out.listing(body, SERVICE_HEADERS, [_service_row(s) for s in body["services"]])


def service_id(client, ref):
    """A service id, or the id of the compute service of host ``ref``."""
    if str(ref).isdigit():
        return int(ref)
    services = client.get("/v1/services")["services"]
    ids = [s["id"] for s in services if s["host"] == ref and s["binary"] == "mininova-compute"]
    if not ids:
        raise CLIError("error: no compute service on host %s (see `mininova service list`)"
                       % ref)
    return ids[0]


def service_set(client, args, out):
    body = {"status": "disabled" if args.disable else "enabled"}
    if args.disable and args.reason is not None:
        body["disabled_reason"] = args.reason
    result = client.put("/v1/services/%d" % service_id(client, args.service), body).body
    s = result["service"]
    out.show(result, list(zip([h.lower().replace(" ", "_") for h in SERVICE_HEADERS],
                              _service_row(s))))


# -- server groups ------------------------------------------------------------

def _group_pairs(g):
    return [(k, g.get(k)) for k in ("id", "name", "policy", "project_id", "created_at")] + [
        ("members", "\n".join(g.get("members") or []))]


def group_create(client, args, out):
    body = client.post("/v1/server-groups", {"name": args.name, "policy": args.policy}).body
    out.show(body, _group_pairs(body["server_group"]))


def group_list(client, args, out):
    body = client.get("/v1/server-groups")
    out.listing(body, ["ID", "Name", "Policy", "Members"],
                [[g["id"], g["name"], g["policy"], len(g["members"])]
                 for g in body["server_groups"]])


def group_show(client, args, out):
    body = client.get("/v1/server-groups/%s" % quote(args.name))
    out.show(body, _group_pairs(body["server_group"]))


def group_delete(client, args, out):
    resp = client.delete("/v1/server-groups/%s" % quote(args.name))
    out.message("Server group %s deleted." % args.name, {"request_id": resp.request_id})


# -- quotas -------------------------------------------------------------------

RESOURCES = ("instances", "cores", "ram")


def own_project(client):
    """The caller's project, for ``quota show`` without one: $MININOVA_PROJECT,
    else the project of the caller's VMs or server groups."""
    project = os.environ.get("MININOVA_PROJECT")
    if project:
        return project
    for path, key in (("/v1/vms", "vms"), ("/v1/server-groups", "server_groups")):
        for item in client.get(path)[key]:
            if item.get("project_id"):
                return item["project_id"]
    raise CLIError("error: which project? give PROJECT_ID (or set MININOVA_PROJECT)", USAGE)


def _quota_out(out, body):
    q = body["quota"]

    def line(r):
        limit = q["limits"].get(r)
        return "%s used of %s" % (q["usage"].get(r), "unlimited" if limit is None or limit < 0
                                  else limit)
    out.show(body, [("project_id", q["project_id"])] + [(r, line(r)) for r in RESOURCES])


def quota_show(client, args, out):
    project = args.project or own_project(client)
    _quota_out(out, client.get("/v1/quotas/%s" % quote(project)))


def quota_set(client, args, out):
    quota = {r: getattr(args, r) for r in RESOURCES if getattr(args, r) is not None}
    if not quota:
        raise CLIError("error: nothing to set: give --instances, --cores or --ram "
                       "(-1 = unlimited)", USAGE)
    _quota_out(out, client.put("/v1/quotas/%s" % quote(args.project), {"quota": quota}).body)
