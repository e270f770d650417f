"""End to end: ``mininova-manage audit [--fix]`` on a real stack (its own:
RabbitMQ, PostgreSQL, libvirtd with QEMU guests). Orphans are made on purpose
behind mininova's back; the audit must list exactly those, --fix must remove
them, a second audit must find nothing, and the real VMs must be untouched."""
import argparse
import datetime
import json
import os
import time
import uuid

import pytest
import sqlalchemy as sa
from oslo_config import cfg

from common import config, context, rpc, states
from nova_manage import audit
from common.db import api as db_api
from common.db.models import Allocation, ComputeNode, Instance, Service
from common.db.session import Database
from nova_compute import rpcapi as compute_rpcapi
from tests.functional.conftest import libvirt_available
from mininova_lab.stack import Stack, domain_names, qemu_img_create, virsh

pytestmark = pytest.mark.real_services("rabbitmq", "postgresql", "libvirt", "http")


@pytest.fixture
def audit_stack(tmp_path):
    if not libvirt_available():
        pytest.fail("libvirtd (qemu:///system) is not reachable: run `make test`")
    # No periodic reconcile: it would itself put the VM whose domain we
    # undefine into ERROR before the audit could find it; no watchdog: it
    # would give up the stuck build before the audit reports it.
    s = Stack(tmp_path, extra_conf="[compute]\nsync_interval = 3600\n"
                                   "[conductor]\nwatchdog_interval = 3600\n")
    s.made = []  # ids of VMs this test created, for the clean-up
    try:
        s.start()
        base = os.path.join(s.workdir, "blank.qcow2")
        qemu_img_create(base, "1G")
        s.image = s.add_image("blank", base)
        s.db = Database(s.db_url)
        yield s
    finally:
        try:
            assert s.delete_all_vms(), "VMs left after the audit test"
        finally:
            left = domain_names()
            for vm_id in s.made:
                if "mininova-" + vm_id in left:
                    virsh("destroy", "mininova-" + vm_id)
                    virsh("undefine", "mininova-" + vm_id, "--managed-save")
            if getattr(s, "db", None) is not None:
                s.db.dispose()
            s.stop()


def stack_conf(stack):
    conf = cfg.ConfigOpts()
    config.register_opts(conf)
    config.parse_args(["--config-file", stack.conf_path], conf=conf, default_config_files=[])
    return conf


def run_audit(stack, capsys, as_json=True, **kw):
    """audit_command in-process, as mininova-manage will call it."""
    args = argparse.Namespace(fix=kw.pop("fix", False), json=as_json, **kw)
    started = time.monotonic()
    code = audit.audit_command(stack_conf(stack), args)
    elapsed = time.monotonic() - started
    out = capsys.readouterr().out
    return code, (json.loads(out) if as_json else out), elapsed


def boot(stack, name):
    r = stack.post("/v1/vms", {"name": name, "image": "blank", "flavor": "m1.tiny"})
    assert r.status_code == 202, r.text
    stack.made.append(r.json()["vm"]["id"])
    return r.json()["vm"]["id"]


def found(out):
    return sorted((f["kind"], f["host"] or "", f["vm"] or "", f["reason"])
                  for f in out["findings"])


def test_audit_lists_exactly_the_orphans_and_fix_removes_them(audit_stack, capsys):
    stack, host, db = audit_stack, audit_stack.host, audit_stack.db
    keep, rowless, vanished = (boot(stack, n) for n in ("keep", "rowless", "vanished"))
    for vm in (keep, rowless, vanished):
        stack.wait_status(vm, "ACTIVE")

    code, out, took = run_audit(stack, capsys)
    assert (code, out["findings"]) == (0, []), out
    timings = {"clean audit": took}

    # -- orphans, made behind mininova's back ---------------------------------
    now = audit.utcnow()
    with db.transaction() as s:
        # A row deleted in SQL: its domain, directory and allocation stay.
        s.execute(sa.update(Instance).where(Instance.id == rowless)
                  .values(deleted_at=now, vm_state=states.DELETED))
        # An allocation nobody counted in the node's sums.
        stray_allocation = str(uuid.uuid4())
        s.add(Allocation(consumer_id=stray_allocation, host=host, vcpus=1, memory_mb=64,
                         disk_gb=1, created_at=now))
        # A VM on a host that was removed from the services.
        flavor = db_api.flavor_get(s, "m1.tiny")
        ghost = db_api.instance_create(
            s, name="ghost", project_id="audit-ghost", image_id=stack.image["id"],
            flavor_id=flavor.id, vcpus=1, memory_mb=64, root_gb=1,
            vm_state=states.ACTIVE, host="decommissioned-" + stack.tag).id
        # A VM that never got past scheduling, two hours ago.
        stuck = db_api.instance_create(
            s, name="stuck", project_id="audit-ghost", image_id=stack.image["id"],
            flavor_id=flavor.id, vcpus=1, memory_mb=64, root_gb=1,
            vm_state=states.BUILDING, task_state=states.SCHEDULING)
        stuck.updated_at = now - datetime.timedelta(hours=2)
        stuck = stuck.id
        # A compute service that heartbeats but does not answer.
        s.add(Service(host="silent-" + stack.tag, binary="mininova-compute", disabled=False,
                      last_heartbeat=now, created_at=now))
    # A domain undefined outside mininova (its disk stays).
    assert virsh("destroy", "mininova-" + vanished).returncode == 0
    assert virsh("undefine", "mininova-" + vanished, "--managed-save").returncode == 0
    # An instance directory nobody owns.
    stray_dir = str(uuid.uuid4())
    os.makedirs(os.path.join(stack.instances_path, stray_dir))
    qemu_img_create(os.path.join(stack.instances_path, stray_dir, "disk"), "1G")

    code, out, took = run_audit(stack, capsys, timeout=3)
    timings["audit with an unreachable host (3 s timeout)"] = took
    assert code == audit.EXIT_FINDINGS | audit.EXIT_NOT_AUDITED  # it could not see "silent"
    assert found(out) == sorted([
        ("orphan-domain", host, rowless, "no-live-row"),
        ("orphan-overlay", host, stray_dir, "no-live-row"),
        ("orphan-allocation", host, rowless, "no-live-row"),
        ("orphan-allocation", host, stray_allocation, "no-live-row"),
        ("orphan-fixed-ip", "", rowless, "no-live-row"),
        ("usage-mismatch", host, "", "used-differs-from-allocations"),
        ("orphan-row", "decommissioned-" + stack.tag, ghost, "host-gone"),
        ("orphan-row", host, vanished, "domain-missing"),
        ("stuck-row", "", stuck, "building"),
    ]), json.dumps(out, indent=1)
    assert out["hosts"]["silent-" + stack.tag]["status"] == "unreachable"
    assert out["not_audited"] == ["silent-" + stack.tag]
    assert out["hosts"][host]["status"] == "audited"
    assert out["hosts"][host]["images"] == [stack.image["id"]]
    with db.transaction() as s:
        s.execute(sa.delete(Service).where(Service.host == "silent-" + stack.tag))

    code, text, took = run_audit(stack, capsys, as_json=False)
    lines = text.splitlines()
    assert code == 1 and len(lines) == 10
    assert ("orphan-domain host=%s vm=%s power=running reason=no-live-row" % (host, rowless)
            in lines)
    assert "orphan-overlay host=%s vm=%s reason=no-live-row" % (host, stray_dir) in lines
    assert lines[-1] == ("summary findings=9 fixed=0 remaining=9 orphan-domain=1 "
                         "orphan-overlay=1 orphan-allocation=2 orphan-fixed-ip=1 "
                         "usage-mismatch=1 orphan-row=2 "
                         "stuck-row=1 hosts_audited=1 hosts_unreachable=0 hosts_down=0 "
                         "hosts_skipped=0 hosts_not_audited=0")

    # Race safety on the host: a VM whose live row is on this host is spared
    # whatever the audit asks.
    transport = rpc.get_transport(stack_conf(stack).transport_url)
    try:
        got = compute_rpcapi.ComputeRPCAPI(transport).audit_fix(
            context.get_admin_context(), host, [keep], timeout=30)
    finally:
        transport.cleanup()
    assert got[keep].startswith("skipped:a live row puts it on this host")
    assert virsh("domstate", "mininova-" + keep).stdout.strip() == "running"

    # -- fix ---------------------------------------------------------------------
    code, out, took = run_audit(stack, capsys, fix=True)
    timings["audit --fix"] = took
    assert code == 1  # the stuck row is reported only
    fixes = {(f["kind"], f["vm"]): f["fix"] for f in out["findings"]}
    assert fixes == {
        ("orphan-domain", rowless): "destroyed",
        ("orphan-overlay", stray_dir): "destroyed",
        ("orphan-allocation", rowless): "released",
        ("orphan-allocation", stray_allocation): "released",
        ("orphan-fixed-ip", rowless): "released",
        ("usage-mismatch", None): "recomputed",
        ("orphan-row", ghost): "soft-deleted",
        ("orphan-row", vanished): "error-marked",
        ("stuck-row", stuck): "none:report-only",
    }, json.dumps(out, indent=1)
    assert out["summary"]["fixed"] == 8 and out["summary"]["remaining"] == 1

    assert "mininova-" + rowless not in domain_names()
    assert not os.path.exists(os.path.join(stack.instances_path, rowless))
    assert not os.path.exists(os.path.join(stack.instances_path, stray_dir))
    vm = stack.vm(vanished)
    assert vm["status"] == "ERROR" and "missing" in vm["fault"]["message"]
    with db.transaction() as s:
        assert s.get(Instance, ghost).deleted_at is not None
        held = s.execute(sa.select(Allocation.consumer_id, Allocation.vcpus,
                                   Allocation.memory_mb, Allocation.disk_gb)
                         .where(Allocation.host == host)).all()
        assert sorted(a.consumer_id for a in held) == sorted([keep, vanished])
        node = s.get(ComputeNode, host)
        assert (node.vcpus_used, node.memory_mb_used, node.local_gb_used) == (
            sum(a.vcpus for a in held), sum(a.memory_mb for a in held),
            sum(a.disk_gb for a in held))
        # The stuck row is the operator's to decide; here it goes.
        s.execute(sa.update(Instance).where(Instance.id == stuck)
                  .values(deleted_at=audit.utcnow(), vm_state=states.DELETED))

    code, text, took = run_audit(stack, capsys, as_json=False)
    timings["audit after --fix"] = took
    assert (code, text.strip()) == (0, "summary findings=0 fixed=0 remaining=0 hosts_audited=1 "
                                       "hosts_unreachable=0 hosts_down=0 hosts_skipped=0 "
                                       "hosts_not_audited=0")
    # A compute host that went down long ago: not audited, so not clean,
    # unless the operator excuses down hosts.
    gone = "gone-" + stack.tag
    with db.transaction() as s:
        s.add(Service(host=gone, binary="mininova-compute", disabled=False,
                      last_heartbeat=audit.utcnow() - datetime.timedelta(days=1),
                      created_at=audit.utcnow()))
    code, text, took = run_audit(stack, capsys, as_json=False)
    assert code == audit.EXIT_NOT_AUDITED
    assert text.splitlines()[0].startswith("not-audited host=%s reason=down " % gone)
    code, out, took = run_audit(stack, capsys, skip_down=True)
    assert (code, out["findings"], out["not_audited"]) == (0, [], [])
    assert out["hosts"][gone] == dict(out["hosts"][gone], status="down", skipped=True)
    with db.transaction() as s:
        s.execute(sa.delete(Service).where(Service.host == gone))
    # The real VM is untouched.
    assert stack.vm(keep)["status"] == "ACTIVE"
    assert virsh("domstate", "mininova-" + keep).stdout.strip() == "running"
    assert os.path.exists(os.path.join(stack.instances_path, keep, "disk"))
    print("\naudit timings: " + ", ".join("%s %.2f s" % kv for kv in timings.items()))
