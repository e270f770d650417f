"""Output: aligned tables for people (like the ``openstack`` CLI's), the
API's JSON for scripts (``-f json``). No third-party library."""
import json
import sys


def cell(value):
    """One value as table text: None as "None", lists joined, dicts as k=v."""
    if value is None:
        return "None"
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, dict):
        return ", ".join("%s=%s" % (k, cell(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(cell(v) for v in value)
    return str(value)


def table(headers, rows, out=None):
    """``rows``: lists of values, one per header. Boxed, aligned columns;
    multi-line values take several lines of their row."""
    out = out or sys.stdout
    cells = [[cell(v).splitlines() or [""] for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, lines in enumerate(row):
            widths[i] = max([widths[i]] + [len(line) for line in lines])
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def line(values):
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths)) + " |"
    print(rule, file=out)
    print(line(headers), file=out)
    print(rule, file=out)
    for row in cells:
        for n in range(max(len(lines) for lines in row)):
            print(line([lines[n] if n < len(lines) else "" for lines in row]), file=out)
    if cells:
        print(rule, file=out)


def fields(pairs, out=None):
    """A ``show`` table: Field | Value, one row per (name, value)."""
    table(["Field", "Value"], [[k, v] for k, v in pairs], out)


def dump_json(body, out=None):
    out = out or sys.stdout
    json.dump(body, out, indent=2, sort_keys=False)
    out.write("\n")


class Output:
    """Where a command's result goes: ``fmt`` is "table" or "json"."""

    def __init__(self, fmt="table", out=None):
        self.fmt = fmt
        self.out = out or sys.stdout

    @property
    def json(self):
        return self.fmt == "json"

    def listing(self, body, headers, rows):
        if self.json:
            dump_json(body, self.out)
        else:
            table(headers, rows, self.out)

    def show(self, body, pairs):
        if self.json:
            dump_json(body, self.out)
        else:
            fields(pairs, self.out)

    def message(self, text, body=None):
        """A sentence for people; with -f json the body (if any) instead."""
        if self.json:
            if body is not None:
                dump_json(body, self.out)
        else:
            print(text, file=self.out)


# -- how resources read in tables ---------------------------------------------

def ref_name(ref):
    """{"id": .., "name": ..} -> the name, else the id."""
    if not isinstance(ref, dict):
        return ref
    return ref.get("name") or ref.get("id")


def addresses(addrs):
    """The IPs of a VM (its MAC alone says nothing to a user)."""
    return ", ".join(a["ip"] for a in addrs or [] if a.get("ip"))


def fault(vm):
    f = vm.get("fault")
    return f.get("message") if isinstance(f, dict) else f


def vm_row(vm):
    return [vm["id"], vm["name"], vm["status"], vm.get("task_state"), vm.get("power_state"),
            vm.get("host"), ref_name(vm.get("image")), ref_name(vm.get("flavor")),
            addresses(vm.get("addresses"))]


VM_HEADERS = ["ID", "Name", "Status", "Task State", "Power State", "Host", "Image",
              "Flavor", "Networks"]


def vm_pairs(vm):
    flavor = vm.get("flavor") or {}
    image = vm.get("image") or {}
    return [
        ("id", vm["id"]), ("name", vm["name"]), ("status", vm["status"]),
        ("vm_state", vm.get("vm_state")), ("task_state", vm.get("task_state")),
        ("power_state", vm.get("power_state")), ("host", vm.get("host")),
        ("project_id", vm.get("project_id")), ("server_group", vm.get("server_group")),
        ("image", "%s (%s)" % (image.get("name"), image.get("id"))),
        ("flavor", "%s (%s vCPU, %s MB RAM, %s GB disk)" % (
            flavor.get("name"), flavor.get("vcpus"), flavor.get("ram"), flavor.get("disk"))),
        ("addresses", "\n".join("%s (mac %s)" % (a.get("ip") or "no IP yet", a.get("mac"))
                                for a in vm.get("addresses") or [])),
        ("created_at", vm.get("created_at")), ("updated_at", vm.get("updated_at")),
        ("launched_at", vm.get("launched_at")), ("fault", fault(vm)),
    ]


def resource(r):
    """A host's {"used", "capacity", "total", "allocation_ratio", "free"}."""
    return "%s/%s used (total %s x %s, %s free)" % (
        r["used"], r["capacity"], r["total"], r["allocation_ratio"], r["free"])


def usage(r):
    return "%s/%s" % (r["used"], r["capacity"])
