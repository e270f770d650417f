"""``mininova-manage audit [--fix]``: what the DB, the allocations and the
compute hosts disagree about, and (with ``--fix``) making them agree again.

Level-based, like ``nova_compute.reconciler``: observe, ``find_orphans(db_view,
host_reports)`` (pure), apply.

Observe: the DB (live VM rows, moves in progress, allocations, held fixed
IPs, compute services and nodes) in one
consistent snapshot, then each compute host that is up over RPC
(``audit_report``: its domains, UUID-named instance directories and cached
images), then the DB once more. A finding must hold against both snapshots:
a VM built or deleted while the hosts were being asked is seen in flux in one
of them and is not taken for an orphan (a build writes its row before its
directory and domain; a delete removes the domain before the row).

Findings: see nova_manage/audit_findings.py (one line each, ``kind key=value ...``).

A compute host that is down, or up but silent within the timeout, is not
audited: its rows and allocations are judged on the DB alone and its hypervisor
not at all, so the audit lists it (``not-audited``, with the reason) and
cannot pass: exit status EXIT_NOT_AUDITED, unless ``--skip-down`` excuses the
hosts that are down (never the silent ones, which claim to be up).

Fix: orphan domains and overlays are destroyed by their host
(``audit_fix``), which first re-checks with the conductor, under the VM's
lock, that there is still no live row for it there; orphan allocations are
released and the nodes' sums recomputed from the allocations in one
transaction that holds the nodes' row locks; an orphan row is soft-deleted
(host gone, which frees its allocations) or put in ERROR with a fault (domain missing), each
by a conditional update that re-checks the state it was found in; an orphan
fixed IP is freed once its VM's row is found not live again under its lock.
"""
import collections
import concurrent.futures
import dataclasses
import json
import logging

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from common import config, context, exception, rpc, states
# The pure part; its names are also this module's (callers and tests use them here).
from nova_manage.audit_findings import (  # noqa: F401
    DEFAULT_STUCK_AFTER, KINDS, DbView, Finding, allocation_orphan_reason, find_orphans, fmt,
    stable_findings)
from common.db import allocations, fixed_ips, vm_migrations
from common.db import api as db_api
from common.db.models import ComputeNode, Instance, Service, utcnow
from common.db.session import Database

LOG = logging.getLogger(__name__)

COMPUTE_BINARY = "mininova-compute"
DEFAULT_HOST_TIMEOUT = 15    # seconds a host gets to answer audit_report
FIX_TIMEOUT = 120            # seconds a host gets to destroy what it was sent

# Exit status of the command, as bits: a host that could not be audited may
# hide findings, so it never passes for clean (unless excused by --skip-down).
EXIT_FINDINGS = 1            # findings remain (after --fix: those it could not fix)
EXIT_NOT_AUDITED = 4         # a compute host was down or did not answer (2: usage error)


# -- observe -------------------------------------------------------------------

def observe_db(db):
    """A DbView from one consistent snapshot (REPEATABLE READ on PostgreSQL;
    SQLite transactions are serialized anyway)."""
    with db.transaction(isolation_level="REPEATABLE READ"
                        if db.dialect == "postgresql" else None) as s:
        now = utcnow()
        instances = {r.id: {"host": r.host, "vm_state": r.vm_state, "task_state": r.task_state,
                            "updated_at": r.updated_at}
                     for r in s.execute(sa.select(Instance.id, Instance.host, Instance.vm_state,
                                                  Instance.task_state, Instance.updated_at)
                                        .where(Instance.deleted_at.is_(None)))}
        held = [dict(r._mapping, consumer=r.consumer_id)
                for r in allocations.all_allocations(s)]
        moves = {i: _move(m) for i, m in vm_migrations.in_progress_by_instance(s).items()}
        # An evacuation "done" still holds its (down) source until that host,
        # back up, destroys its copy there: counted as a move until then.
        for m in vm_migrations.evacuations_to_clean(s):
            moves.setdefault(m.instance_id, _move(m))
        services = {r.host: {"last_heartbeat": r.last_heartbeat, "disabled": r.disabled}
                    for r in s.execute(sa.select(Service.host, Service.last_heartbeat,
                                                 Service.disabled)
                                       .where(Service.binary == COMPUTE_BINARY))}
        nodes = {r.host: {"vcpus_used": r.vcpus_used, "memory_mb_used": r.memory_mb_used,
                          "local_gb_used": r.local_gb_used}
                 for r in s.execute(sa.select(ComputeNode.host, ComputeNode.vcpus_used,
                                              ComputeNode.memory_mb_used,
                                              ComputeNode.local_gb_used))}
        held_ips = [{"network": n, "address": a, "instance": i}
                    for n, a, i in fixed_ips.held_rows(s)]
    return DbView(now, instances, held, services, nodes, moves, held_ips)


def _move(row):
    return {"uuid": row.uuid, "source_host": row.source_host, "dest_host": row.dest_host,
            "status": row.status}


def host_is_up(service, now, down_after):
    beat = service["last_heartbeat"]
    return beat is not None and (now - beat).total_seconds() <= down_after


def normalize_report(report):
    return {"domains": {d["id"]: d["power_state"] for d in report.get("domains", [])},
            "dirs": sorted(report.get("dirs", [])),
            "images": sorted(report.get("images", []))}


def _on_hosts(hosts, fn):
    """{host: (result, None) or (None, error message)} of ``fn(host)``, run
    for all hosts at once (a silent host costs one timeout, not one each)."""
    results = {}
    if not hosts:
        return results
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(16, len(hosts))) as pool:
        futures = {host: pool.submit(fn, host) for host in hosts}
        for host, future in futures.items():
            try:
                results[host] = (future.result(), None)
            except Exception as e:  # a host's trouble is reported, never fatal
                results[host] = (None, exception.describe(e))
    return results


def observe_hosts(compute_rpcapi, ctxt, hosts, timeout):
    """({host: normalized report}, {host: error}) of the hosts asked."""
    reports, errors = {}, {}
    for host, (report, error) in _on_hosts(
            sorted(hosts), lambda h: compute_rpcapi.audit_report(ctxt, h, timeout=timeout)).items():
        if error is None:
            reports[host] = normalize_report(report)
        else:
            errors[host] = error
    return reports, errors


@dataclasses.dataclass
class AuditResult:
    findings: list
    # host -> {"status": "audited", ...} or, for a host whose hypervisor was
    # not seen, {"status": "down"|"unreachable", "last_heartbeat"|"error": ...,
    # "skipped": bool} (skipped: a down host excused by --skip-down).
    hosts: dict
    fixed: bool = False

    @property
    def remaining(self):
        return [f for f in self.findings if f.remaining]

    @property
    def not_audited(self):
        """The hosts that were not audited and not excused: their domains and
        directories were not compared, so the audit cannot call them clean."""
        return [h for h, info in self.hosts.items()
                if info["status"] != "audited" and not info.get("skipped")]

    def exit_code(self):
        return ((EXIT_FINDINGS if self.remaining else 0)
                | (EXIT_NOT_AUDITED if self.not_audited else 0))

    def summary(self):
        by_kind = collections.Counter(f.kind for f in self.findings)
        status = collections.Counter(h["status"] for h in self.hosts.values())
        summary = {"findings": len(self.findings),
                   "fixed": (len(self.findings) - len(self.remaining)) if self.fixed else 0,
                   "remaining": len(self.remaining)}
        summary.update({k: by_kind[k] for k in KINDS if by_kind[k]})
        summary.update({"hosts_audited": status["audited"],
                        "hosts_unreachable": status["unreachable"],
                        "hosts_down": status["down"],
                        "hosts_skipped": sum(bool(h.get("skipped")) for h in self.hosts.values()),
                        "hosts_not_audited": len(self.not_audited)})
        return summary


def run_audit(db, compute_rpcapi, down_after, fix=False, stuck_after=DEFAULT_STUCK_AFTER,
              host_timeout=DEFAULT_HOST_TIMEOUT, ctxt=None, skip_down=False):
    """``skip_down``: a host that is down (no heartbeat for ``down_after``
    seconds) is not held against the result; one that heartbeats but does
    not answer always is."""
    ctxt = ctxt or context.get_admin_context()
    before = observe_db(db)
    hosts, up = {}, []
    for host, svc in sorted(before.services.items()):
        if host_is_up(svc, before.now, down_after):
            up.append(host)
        else:
            hosts[host] = {"status": "down", "last_heartbeat": svc["last_heartbeat"],
                           "skipped": bool(skip_down)}
    reports, errors = observe_hosts(compute_rpcapi, ctxt, up, host_timeout)
    for host, error in errors.items():
        hosts[host] = {"status": "unreachable", "error": error, "skipped": False}
    for host, report in reports.items():
        hosts[host] = {"status": "audited", "domains": len(report["domains"]),
                       "dirs": len(report["dirs"]), "images": report["images"]}
    after = observe_db(db)
    findings = stable_findings(find_orphans(before, reports, stuck_after),
                               find_orphans(after, reports, stuck_after))
    result = AuditResult(findings, dict(sorted(hosts.items())))
    if fix:
        apply_fixes(db, compute_rpcapi, ctxt, findings)
        result.fixed = True
    return result


# -- apply ---------------------------------------------------------------------

def apply_fixes(db, compute_rpcapi, ctxt, findings):
    """Sets ``fix`` on every finding. Hosts first (domains and overlays), then
    rows (a soft delete frees its allocations), then allocations and node sums."""
    by_host = collections.defaultdict(list)
    for f in findings:
        if f.kind in ("orphan-domain", "orphan-overlay"):
            by_host[f.host].append(f)
    outcomes = _on_hosts(sorted(by_host), lambda h: compute_rpcapi.audit_fix(
        ctxt, h, sorted({f.vm for f in by_host[h]}), timeout=FIX_TIMEOUT))
    for host, (results, error) in outcomes.items():
        for f in by_host[host]:
            f.fix = ("failed:%s" % error) if error else results.get(
                f.vm, "failed:the host did not answer for this VM")
    for f in findings:
        try:
            if f.kind == "orphan-row" and f.reason == "host-gone":
                f.fix = _retry(db, _fix_host_gone, f)
            elif f.kind == "orphan-row" and f.reason == "domain-missing":
                f.fix = _retry(db, _fix_domain_missing, f)
            elif f.kind == "orphan-fixed-ip":
                f.fix = _retry(db, _fix_fixed_ip, f)
            elif f.kind == "stuck-row":
                f.fix = "none:report-only"
        except Exception as e:
            LOG.exception("fixing %s failed", f.line())
            f.fix = "failed:%s" % exception.describe(e)
    held = [f for f in findings if f.kind in ("orphan-allocation", "usage-mismatch")]
    if held:
        try:
            outcome = _retry(db, _fix_allocations, held)
        except Exception as e:
            LOG.exception("releasing allocations failed")
            outcome = {f.key: "failed:%s" % exception.describe(e) for f in held}
        for f in held:
            f.fix = outcome[f.key]


def _retry(db, fn, *args, attempts=3):
    """``fn(session, *args)`` in a transaction, again after a deadlock (the
    DB aborted us to let a concurrent allocation or delete through)."""
    for attempt in range(attempts):
        try:
            with db.transaction() as s:
                return fn(s, *args)
        except sa_exc.DBAPIError as e:
            if attempt + 1 == attempts or "deadlock" not in str(e.orig).lower():
                raise
            LOG.info("deadlock while fixing; trying again")


def _fix_host_gone(s, f):
    if s.scalar(sa.select(Service.id).where(Service.host == f.host,
                                            Service.binary == COMPUTE_BINARY)) is not None:
        return "skipped:host %s is a compute service again" % f.host
    if db_api.instance_soft_delete(s, f.vm, expected_host=f.host):
        return "soft-deleted"
    return "skipped:the row changed meanwhile"


def _fix_domain_missing(s, f):
    done = db_api.instance_update_if(
        s, f.vm, {"vm_state": states.ERROR, "power_state": states.NOSTATE,
                  "fault": "The VM's domain is missing from host %s (found by "
                           "mininova-manage audit)." % f.host},
        expected_task_state=None, expected_host=f.host, expected_vm_state=states.RESTING)
    return "error-marked" if done else "skipped:the row changed meanwhile"


def _fix_fixed_ip(s, f):
    """Free what a VM without a live row holds (re-checked under the row's lock,
    which the conductor's allocation takes too)."""
    if s.scalar(sa.select(Instance.id).where(Instance.id == f.vm, Instance.deleted_at.is_(None))
                .with_for_update()) is not None:
        return "skipped:the VM is live again"
    return "released" if fixed_ips.release_instance(s, f.vm) else "skipped:already free"


def _fix_allocations(s, findings):
    """Release the orphan allocations (each re-checked) and recompute the sums
    of the nodes concerned, in one transaction. The nodes' rows are locked
    first, as an allocation's UPDATE does, so none on them is added or
    removed meanwhile; a release already under way (its allocation deleted,
    waiting for the node) is still counted here and subtracts itself after we
    commit."""
    hosts = sorted({f.host for f in findings})
    s.execute(sa.select(ComputeNode.host).where(ComputeNode.host.in_(hosts))
              .order_by(ComputeNode.host).with_for_update())
    outcome = {}
    for f in findings:
        if f.kind != "orphan-allocation":
            continue
        held = allocations.on_host(s, f.vm, f.host)
        if held is None:
            outcome[f.key] = "skipped:the allocation is gone"
        elif _allocation_wanted(s, f.vm, f.host):
            outcome[f.key] = "skipped:the allocation is its consumer's again"
        else:
            allocations.release_on_host(s, f.vm, f.host)
            outcome[f.key] = "released"
    for host, usage in allocations.usage_by_host(s, hosts).items():
        allocations.set_usage(s, host, usage)
    for f in findings:
        if f.kind == "usage-mismatch":
            outcome[f.key] = "recomputed"
    return outcome


def _allocation_wanted(s, consumer, host):
    """The re-check of an orphan allocation against the DB as it is now."""
    row = s.execute(sa.select(Instance.host, Instance.vm_state).where(
        Instance.id == consumer, Instance.deleted_at.is_(None))).first()
    own_move = vm_migrations.in_progress_for_instance(s, consumer)
    as_move = vm_migrations.in_progress_by_uuid(s, consumer)
    return allocation_orphan_reason(
        {"host": host}, row and {"host": row.host, "vm_state": row.vm_state},
        as_move and _move(as_move),
        set() if own_move is None else {own_move.source_host, own_move.dest_host}) is None


# -- output and the command ----------------------------------------------------

def render_text(result):
    lines = []
    for host, info in result.hosts.items():
        if info["status"] == "down":
            line = "not-audited host=%s reason=down last_heartbeat=%s" % (
                host, fmt(info["last_heartbeat"]))
        elif info["status"] == "unreachable":
            line = "not-audited host=%s reason=unreachable error=%s" % (
                host, fmt(info["error"]))
        else:
            continue
        lines.append(line + (" skipped=--skip-down" if info.get("skipped") else ""))
    lines += [f.line() for f in result.findings]
    lines.append("summary " + " ".join("%s=%s" % kv for kv in result.summary().items()))
    return "\n".join(lines)


def render_json(result):
    return json.dumps({"findings": [f.to_dict() for f in result.findings],
                       "hosts": result.hosts, "not_audited": result.not_audited,
                       "summary": result.summary()},
                      default=fmt, indent=1)


EXIT_STATUS_HELP = (
    "Exit status: 0 every compute host was audited and nothing remains (nothing was "
    "found, or --fix fixed it all); 1 findings remain; 4 a compute host could not be "
    "audited (down, or it did not answer in time): its domains and directories were not "
    "compared, so orphans may hide there; 5 both (2: usage error).")


def audit_command(conf, args):
    """Entry point of ``mininova-manage audit [--fix] [--json] [--skip-down]``;
    returns the exit code (EXIT_STATUS_HELP). Optional ``args.stuck_after``
    and ``args.timeout`` (seconds) override the stuck-row threshold and a
    host's answer time; ``args.skip_down`` excuses down hosts."""
    from nova_compute import rpcapi as compute_rpcapi  # only the command needs it
    db = Database(config.database_url(conf))
    transport = rpc.get_transport(conf.transport_url, **config.transport_options(conf))
    try:
        result = run_audit(
            db, compute_rpcapi.ComputeRPCAPI(transport, timeout=conf.rpc_response_timeout,
                                             version_cap=conf.upgrade_levels.compute),
            conf.scheduler.service_down_time, fix=bool(getattr(args, "fix", False)),
            stuck_after=getattr(args, "stuck_after", None) or DEFAULT_STUCK_AFTER,
            host_timeout=getattr(args, "timeout", None) or DEFAULT_HOST_TIMEOUT,
            skip_down=bool(getattr(args, "skip_down", False)))
    finally:
        transport.cleanup()
        db.dispose()
    print(render_json(result) if getattr(args, "json", False) else render_text(result))
    return result.exit_code()
