"""The pure part of ``mininova-manage audit`` (nova_manage/audit.py):
``find_orphans(db_view, host_reports)`` says what the DB, the allocations and
the hosts' reports disagree about, without I/O.

Findings (one line each, ``kind key=value ...``):

- ``orphan-domain``: a domain host H owns with no live row, or with its row
  on another host and no move of it in progress from or to H.
- ``orphan-overlay``: an instance directory on H with no domain there and no
  live row on H and no move of it from or to H (a VM being built on H has its
  row on H: not an orphan).
  Like the rest of mininova, this takes ``instances_path`` to be each host's
  own: on storage shared between hosts, another host's VM would look orphaned.
- ``orphan-allocation``: an allocation whose consumer is neither a live VM
  nor a move in progress (``no-live-row``); a VM's allocation while its row
  has no host, or on a host that is neither its row's nor one of its move in
  progress (``row-elsewhere``); a move's allocation on a host that is not the
  move's (``host-not-in-move``). (A VM in ERROR that still has its host keeps
  its allocation until it is deleted, as Nova does.)
- ``orphan-fixed-ip``: a fixed IP held by a VM with no live row (every
  delete frees it: only a row removed behind mininova's back leaves one).
- ``usage-mismatch``: a compute node whose ``*_used`` are not the sums of the
  allocations on it.
- ``orphan-row``: a live row whose host is not a compute service
  (``reason=host-gone``), or a resting row (active/stopped/paused/suspended,
  no task) on an audited host whose domain is missing (``domain-missing``).
- ``stuck-row``: a row building, or deleting, unchanged for longer than the
  threshold. Reported only: a human decides.
"""
import collections
import dataclasses
import datetime
import json

from common import states

KINDS = ("orphan-domain", "orphan-overlay", "orphan-allocation", "orphan-fixed-ip",
         "usage-mismatch", "orphan-row", "stuck-row")
DEFAULT_STUCK_AFTER = 3600   # seconds a row may stay building/deleting


@dataclasses.dataclass
class Finding:
    kind: str
    host: str | None
    vm: str | None
    reason: str
    details: dict = dataclasses.field(default_factory=dict)
    # With --fix: what was done. "destroyed", "released", "recomputed",
    # "soft-deleted", "error-marked"; "skipped:<why>" when the re-check found
    # it is no orphan any more; "failed:<why>"; "none:report-only".
    fix: str | None = None

    @property
    def key(self):
        return (self.kind, self.host, self.vm)

    @property
    def remaining(self):
        return self.fix is None or self.fix.startswith(("failed", "none"))

    def to_dict(self):
        d = {"kind": self.kind, "host": self.host, "vm": self.vm, "reason": self.reason}
        d.update(self.details)
        if self.fix is not None:
            d["fix"] = self.fix
        return d

    def line(self):
        fields = [("host", self.host)]
        if self.vm is not None:
            fields.append(("vm", self.vm))
        fields += list(self.details.items()) + [("reason", self.reason)]
        if self.fix is not None:
            fields.append(("fix", self.fix))
        return " ".join([self.kind] + ["%s=%s" % (k, fmt(v)) for k, v in fields])


def fmt(value):
    if value is None:
        return "-"
    if isinstance(value, datetime.datetime):
        return value.isoformat(timespec="seconds")
    text = str(value)
    if not text or any(c.isspace() or c in "\"'=" for c in text):
        return json.dumps(text)
    return text


@dataclasses.dataclass
class DbView:
    """One consistent look at the DB, as plain dicts keyed by id or host."""
    now: datetime.datetime
    instances: dict   # id -> {host, vm_state, task_state, updated_at}  (live rows)
    allocations: list  # [{consumer, host, vcpus, memory_mb, disk_gb}]
    services: dict    # compute host -> {last_heartbeat, disabled}
    nodes: dict       # host -> {vcpus_used, memory_mb_used, local_gb_used}
    # instance id -> {uuid, source_host, dest_host, status}: moves in progress
    moves: dict = dataclasses.field(default_factory=dict)
    # [{network, address, instance}]: the held fixed IPs
    fixed_ips: list = dataclasses.field(default_factory=list)

    def move_hosts(self, instance_id):
        """The hosts of the VM's move in progress (empty without one)."""
        move = self.moves.get(instance_id)
        return set() if move is None else {move["source_host"], move["dest_host"]} - {None}


def _not_live_here(row, host, move_hosts):
    """None when ``row`` is a live row on ``host``, or its VM's move in
    progress involves ``host``; else (reason, details)."""
    if row is None:
        return "no-live-row", {}
    if row["host"] != host and host not in move_hosts:
        return "row-elsewhere", {"row_host": row["host"], "vm_state": row["vm_state"]}
    return None


def allocation_orphan_reason(allocation, row, move, move_hosts):
    """Why an allocation should not exist (None: it should). ``row``: the
    live row of the consumer if it is a VM; ``move``: the move in progress
    whose uuid is the consumer, if any; ``move_hosts``: the hosts of the
    VM's own move in progress."""
    host = allocation["host"]
    if move is not None:
        if host not in (move["source_host"], move["dest_host"]):
            return "host-not-in-move", {"source_host": move["source_host"],
                                        "dest_host": move["dest_host"]}
        return None
    if row is None:
        return "no-live-row", {}
    if row["host"] is None:
        return "row-has-no-host", {"vm_state": row["vm_state"]}
    if row["host"] != host and host not in move_hosts:
        return "row-elsewhere", {"row_host": row["host"]}
    return None


def find_orphans(db, host_reports, stuck_after=DEFAULT_STUCK_AFTER):
    """``db``: a DbView; ``host_reports``: {host: {"domains": {id: power},
    "dirs": [ids], "images": [...]}} of the hosts that answered (a host not
    in it is judged on the DB alone). Returns a list of Findings, sorted."""
    rows = db.instances
    findings = []
    for host, report in sorted(host_reports.items()):
        domains = report["domains"]
        for vm, power in sorted(domains.items()):
            why = _not_live_here(rows.get(vm), host, db.move_hosts(vm))
            if why:
                findings.append(Finding("orphan-domain", host, vm, why[0],
                                        dict({"power": power}, **why[1])))
        for vm in sorted(set(report["dirs"]) - set(domains)):
            why = _not_live_here(rows.get(vm), host, db.move_hosts(vm))
            if why:
                findings.append(Finding("orphan-overlay", host, vm, why[0], why[1]))

    allocated = collections.defaultdict(lambda: [0, 0, 0])
    moves_by_uuid = {m["uuid"]: m for m in db.moves.values()}
    for a in sorted(db.allocations, key=lambda a: (a["consumer"], a["host"])):
        sums = allocated[a["host"]]
        sums[0] += a["vcpus"]
        sums[1] += a["memory_mb"]
        sums[2] += a["disk_gb"]
        consumer = a["consumer"]
        why = allocation_orphan_reason(a, rows.get(consumer), moves_by_uuid.get(consumer),
                                       db.move_hosts(consumer))
        if why:
            findings.append(Finding("orphan-allocation", a["host"], consumer, why[0], dict(
                {"vcpus": a["vcpus"], "memory_mb": a["memory_mb"],
                 "disk_gb": a["disk_gb"]}, **why[1])))
    for ip in sorted(db.fixed_ips, key=lambda i: (i["instance"], i["network"])):
        if ip["instance"] not in rows:
            findings.append(Finding("orphan-fixed-ip", None, ip["instance"], "no-live-row",
                                    {"network": ip["network"], "address": ip["address"]}))
    for host, node in sorted(db.nodes.items()):
        used = (node["vcpus_used"], node["memory_mb_used"], node["local_gb_used"])
        sums = tuple(allocated.get(host, (0, 0, 0)))
        if used != sums:
            findings.append(Finding("usage-mismatch", host, None,
                                    "used-differs-from-allocations", {
                                        "vcpus_used": used[0], "vcpus_allocated": sums[0],
                                        "memory_mb_used": used[1], "memory_mb_allocated": sums[1],
                                        "local_gb_used": used[2], "local_gb_allocated": sums[2]}))

    for vm, row in sorted(rows.items()):
        host, vm_state, task = row["host"], row["vm_state"], row["task_state"]
        if host is not None and host not in db.services:
            findings.append(Finding("orphan-row", host, vm, "host-gone", {
                "vm_state": vm_state, "task_state": task}))
            continue
        report = host_reports.get(host)
        if (report is not None and vm_state in states.RESTING and task is None
                and vm not in report["domains"]):
            findings.append(Finding("orphan-row", host, vm, "domain-missing",
                                    {"vm_state": vm_state, "task_state": task}))
            continue
        stuck = (states.DELETING if task == states.DELETING else
                 states.BUILDING if vm_state == states.BUILDING else None)
        age = (db.now - row["updated_at"]).total_seconds()
        if stuck and age > stuck_after:
            findings.append(Finding("stuck-row", host, vm, stuck, {
                "vm_state": vm_state, "task_state": task, "age_s": int(age)}))
    findings.sort(key=lambda f: (KINDS.index(f.kind), f.host or "", f.vm or ""))
    return findings


def stable_findings(first, second):
    """The findings of ``second`` that ``first`` (a look at the DB taken
    before the hosts were asked) has too: those that held all along."""
    keys = {f.key for f in first}
    return [f for f in second if f.key in keys]
