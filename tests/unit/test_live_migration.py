"""Live migration end to end in one process: the /v1 and Nova 2.1 actions
(admin), the conductor's live-migrate task, the scheduler's move placement
and two compute hosts on the in-memory fake driver, each RPC run at once on
its receiver; then what failures and an abort leave: the VM running on its
source, its allocations as before, nothing on the destination."""
import datetime
import threading

import pytest

from common import context, exception, states
from common.db import api as db_api
from common.db import vm_migrations
from common.db.models import Service, utcnow
from common.timeline import DbSink, Timeline
from nova_api.app import create_app
from nova_compute.imagecache import ImageCache, read_file_chunks
from nova_compute.manager import ComputeManager
from nova_compute.virt.fake import FakeDriver
from nova_conductor.manager import ConductorManager
from nova_conductor.tasks.live_migrate import LiveMigrationTask
from nova_scheduler.manager import SchedulerManager
from tests.conftest import Recorder
from tests.unit.conftest import auth_headers
from tests.unit.test_compute_manager import base_image  # noqa: F401
from tests.unit.test_evacuate import A, B, HostConf, build_on, held, migration, row

CTXT = context.RequestContext(project_id="p")


class Computes:
    """The compute RPC client: each message runs at once on its host."""

    def __init__(self):
        self.managers = {}
        self.sent = []
        self.threads = []

    def _on(self, ctxt, host, method, *args):
        self.sent.append((host, method))
        return getattr(self.managers[host], method)(ctxt, *args)

    def pre_live_migration(self, ctxt, host, instance_id, migration_uuid, image, timeout):
        return self._on(ctxt, host, "pre_live_migration", instance_id, migration_uuid, image)

    def live_migration(self, ctxt, host, instance_id, migration_uuid, dest_host, migrate_data):
        self._on(ctxt, host, "live_migration", instance_id, migration_uuid, dest_host, migrate_data)

    def live_migration_abort(self, ctxt, host, instance_id, migration_uuid):
        self._on(ctxt, host, "live_migration_abort", instance_id, migration_uuid)

    def post_live_migration_at_destination(self, ctxt, host, instance_id, migration_uuid,
                                           timeout):
        return self._on(ctxt, host, "post_live_migration_at_destination", instance_id,
                        migration_uuid)

    def terminate_instance(self, ctxt, host, instance_id):
        """Later, in a thread: the source's delete waits for the VM's lock,
        which the copy (this very thread, here) holds."""
        self.sent.append((host, "terminate_instance"))
        thread = threading.Thread(target=self.managers[host].terminate_instance,
                                  args=(ctxt, instance_id), daemon=True)
        self.threads.append(thread)
        thread.start()

    def rollback_live_migration_at_destination(self, ctxt, host, instance_id, migration_uuid):
        self._on(ctxt, host, "rollback_live_migration_at_destination", instance_id, migration_uuid)


class ConductorClient:
    """The API's BuildClient: a live migration starts at once in the conductor."""

    def __init__(self, conductor):
        self.conductor = conductor

    def live_migrate_instance(self, ctxt, instance_id, migration_uuid, host=None):
        self.conductor.live_migrate_instance(ctxt, instance_id, migration_uuid, host)


class HookedDriver(FakeDriver):
    """``on_copy(n)`` after each progress report of a live migration (n = 0..4)."""
    on_copy = None

    def _copying(self, instance_id, n):
        if self.on_copy is not None:
            self.on_copy(n)


class FailingPrepare(FakeDriver):
    def pre_live_migration(self, instance, base_image_path, migrate_data):
        raise exception.MigrationError(instance=instance.id, reason="no room for the overlay")


def make_world(conf, db, base_image, drivers=(HookedDriver, HookedDriver), computes=None):
    computes = computes or Computes()
    task = LiveMigrationTask(db, SchedulerManager(db, Recorder(), conf), computes,
                             Timeline(DbSink(db), "conductor"))
    conductor = ConductorManager(db, live_migration_task=task)
    path, checksum = base_image
    for host, driver_cls in zip((A, B), drivers):
        hconf = HostConf(conf, host)
        driver = driver_cls(hconf)
        driver.init_host(host)
        cache = ImageCache(conf.compute.image_cache_path,
                           fetcher=lambda url: read_file_chunks(path))
        manager = computes.managers[host] = ComputeManager(driver, conductor, cache, hconf)
        manager.live_migrator.progress_interval = 0  # every report reaches the record
        manager.heartbeat(CTXT)
    app = create_app(conf, db, ConductorClient(conductor), computes)
    w = type("World", (), {})()
    w.db, w.computes, w.image, w.task = db, computes, (path, checksum), task
    w.a, w.b = computes.managers[A], computes.managers[B]
    w.client = app.test_client()
    w.admin = auth_headers(db, "p", "admin")
    w.member = auth_headers(db, "p", "member")
    return w


@pytest.fixture
def w(conf, db, base_image):  # noqa: F811
    return make_world(conf, db, base_image)


def live_migrate(w, vm, headers=None, **args):
    return w.client.post("/v1/vms/%s/action" % vm, json={"live_migrate": args},
                         headers=headers or w.admin)


def domains(manager, vm):
    return [i for i in manager.driver.list_instances() if i["id"] == vm]


def timeline(w, vm):
    actions = w.client.get("/v1/vms/%s/actions" % vm, headers=w.admin).get_json()["actions"]
    last = w.client.get("/v1/vms/%s/actions/%s" % (vm, actions[0]["request_id"]),
                        headers=w.admin).get_json()["action"]
    return last


def test_live_migration_there_and_back(w):
    vm = build_on(w, A)
    r = live_migrate(w, vm, host=B)
    assert r.status_code == 202, r.text
    uuid = r.get_json()["migration"]
    inst = row(w.db, vm)
    assert (inst.host, inst.vm_state, inst.task_state) == (B, states.ACTIVE, None)
    assert [d["power_state"] for d in domains(w.b, vm)] == [states.RUNNING]
    assert domains(w.a, vm) == []
    m = migration(w.db, uuid)
    assert (m.migration_type, m.status, m.source_host, m.dest_host) == (
        "live-migration", "completed", A, B)
    assert m.memory_total > 0 and m.memory_processed == m.memory_total
    assert m.memory_remaining == 0
    assert held(w.db, vm) == [B] and held(w.db, uuid) == []
    listed = w.client.get("/v1/vms/%s/migrations" % vm, headers=w.admin).get_json()
    (shown,) = listed["migrations"]
    assert (shown["id"], shown["type"], shown["status"], shown["source"],
            shown["destination"]) == (uuid, "live-migration", "completed", A, B)
    assert shown["memory_processed_bytes"] == shown["memory_total_bytes"] == m.memory_total
    assert shown["memory_remaining_bytes"] == 0
    assert w.computes.sent == [
        (B, "pre_live_migration"), (A, "live_migration"),
        (B, "post_live_migration_at_destination")]
    action = timeline(w, vm)
    assert action["action"] == "live-migration" and action["result"] == "success"
    assert [e["event"] for e in action["events"]] == [
        "accepted", "live-migration destination", "live-migration prepared",
        "live-migration started", "live-migration settled", "live-migration completed"]

    # Back, the scheduler's choice: the only other host.
    r = live_migrate(w, vm)
    assert r.status_code == 202, r.text
    assert row(w.db, vm).host == A and held(w.db, vm) == [A]
    assert domains(w.b, vm) == [] and len(domains(w.a, vm)) == 1


def test_a_paused_vm_moves_paused_and_stays_paused(w):
    """Nova's test_live_block_migration_paused."""
    vm = build_on(w, A)
    w.a.driver._domains[vm].power_state = states.PAUSED_POWER
    with w.db.transaction() as s:
        db_api.instance_update_if(s, vm, {"vm_state": states.PAUSED,
                                          "power_state": states.PAUSED_POWER})
    r = live_migrate(w, vm, host=B)
    assert r.status_code == 202, r.text
    inst = row(w.db, vm)
    assert (inst.host, inst.vm_state, inst.task_state, inst.power_state) == (
        B, states.PAUSED, None, states.PAUSED_POWER)
    assert [d["power_state"] for d in domains(w.b, vm)] == [states.PAUSED_POWER]
    assert domains(w.a, vm) == [] and held(w.db, vm) == [B]
    assert migration(w.db, r.get_json()["migration"]).status == "completed"


def test_nova_os_migrate_live(w):
    vm = build_on(w, A)
    url = "/compute/v2.1/servers/%s/action" % vm
    body = {"os-migrateLive": {"host": None, "block_migration": "auto",
                               "disk_over_commit": False}}
    assert w.client.post(url, json=body, headers=w.admin).status_code == 400  # 2.1: a bool
    body["os-migrateLive"]["block_migration"] = False
    r = w.client.post(url, json=body, headers=w.admin)
    assert r.status_code == 400 and "shared" in r.text
    assert w.client.post(url, json={"os-migrateLive": {"host": None}},
                         headers=w.admin).status_code == 400
    body["os-migrateLive"]["block_migration"] = True
    assert w.client.post(url, json=body, headers=w.member).status_code == 403
    r = w.client.post(url, json=body, headers=w.admin)
    assert r.status_code == 202, r.text
    assert row(w.db, vm).host == B


def test_refusals_name_what_is_wrong(w):
    vm = build_on(w, A)
    r = live_migrate(w, vm, headers=w.member, host=B)
    assert r.status_code == 403
    r = live_migrate(w, vm, host=A)
    assert r.status_code == 400 and "another one" in r.text
    r = live_migrate(w, vm, host="nosuchhost")
    assert r.status_code == 400 and "nosuchhost" in r.text
    with w.db.transaction() as s:
        s.query(Service).filter_by(host=B, binary="mininova-compute").one().disabled = True
    r = live_migrate(w, vm, host=B)
    assert r.status_code == 400 and "disabled" in r.text
    with w.db.transaction() as s:
        svc = s.query(Service).filter_by(host=B, binary="mininova-compute").one()
        svc.disabled, svc.last_heartbeat = False, utcnow() - datetime.timedelta(hours=1)
    r = live_migrate(w, vm, host=B)
    assert r.status_code == 400 and "down" in r.text
    assert held(w.db, vm) == [A]
    w.b.heartbeat(CTXT)
    r = live_migrate(w, vm, block_migration=False)
    assert r.status_code == 400
    r = live_migrate(w, vm, bogus=1)
    assert r.status_code == 400
    with w.db.transaction() as s:
        db_api.instance_update_if(s, vm, {"vm_state": states.STOPPED})
    r = live_migrate(w, vm, host=B)
    assert r.status_code == 409 and "SHUTOFF" in r.text
    with w.db.transaction() as s:
        db_api.instance_update_if(s, vm, {"vm_state": states.ACTIVE,
                                          "task_state": states.REBOOTING})
    r = live_migrate(w, vm, host=B)
    assert r.status_code == 409 and "rebooting" in r.text
    assert held(w.db, vm) == [A]
    with w.db.transaction() as s:
        db_api.instance_update_if(s, vm, {"task_state": None})
    r = w.client.post("/v1/vms/%s/action" % vm, json={"live_migrate_abort": {}},
                      headers=w.admin)
    assert r.status_code == 404  # no live migration in progress


def test_abort_mid_copy_leaves_it_running_on_the_source(w):
    vm = build_on(w, A)
    answers = []

    def abort_at(n):
        if n == 2:
            answers.append(w.client.post("/v1/vms/%s/action" % vm,
                                         json={"live_migrate_abort": {}}, headers=w.admin))
    w.a.driver.on_copy = abort_at
    r = live_migrate(w, vm, host=B)
    assert r.status_code == 202
    uuid = r.get_json()["migration"]
    assert [a.status_code for a in answers] == [202]
    assert answers[0].get_json()["migration"] == uuid
    inst = row(w.db, vm)
    assert (inst.host, inst.vm_state, inst.task_state) == (A, states.ACTIVE, None)
    assert [d["power_state"] for d in domains(w.a, vm)] == [states.RUNNING]
    assert domains(w.b, vm) == []
    m = migration(w.db, uuid)
    assert m.status == "cancelled" and 0 < m.memory_processed < m.memory_total
    assert held(w.db, vm) == [A] and held(w.db, uuid) == []
    action = timeline(w, vm)
    assert action["result"] == "error"
    assert "live-migration cancelled" in [e["event"] for e in action["events"]]
    # Not abortable once it ended.
    r = w.client.delete("/v1/vms/%s/migrations/%s" % (vm, uuid), headers=w.admin)
    assert r.status_code == 404
    # And it can move again.
    w.a.driver.on_copy = None
    assert live_migrate(w, vm, host=B).status_code == 202 and row(w.db, vm).host == B


def test_copy_failing_leaves_it_running_on_the_source(w):
    vm = build_on(w, A)

    def fail_at(n):
        if n == 3:
            raise exception.HypervisorError(reason="destination libvirtd went away")
    w.a.driver.on_copy = fail_at
    uuid = live_migrate(w, vm, host=B).get_json()["migration"]
    inst = row(w.db, vm)
    assert (inst.host, inst.vm_state, inst.task_state) == (A, states.ACTIVE, None)
    assert [d["power_state"] for d in domains(w.a, vm)] == [states.RUNNING]
    assert domains(w.b, vm) == []
    assert migration(w.db, uuid).status == "error"
    assert held(w.db, vm) == [A] and held(w.db, uuid) == []
    assert (B, "rollback_live_migration_at_destination") in w.computes.sent
    action = timeline(w, vm)
    assert action["result"] == "error" and "went away" in action["events"][-1]["details"]


def test_failed_preparation_ends_it_before_the_copy(conf, db, base_image):  # noqa: F811
    w = make_world(conf, db, base_image, drivers=(HookedDriver, FailingPrepare))
    vm = build_on(w, A)
    uuid = live_migrate(w, vm, host=B).get_json()["migration"]
    assert (row(w.db, vm).host, row(w.db, vm).task_state) == (A, None)
    assert migration(w.db, uuid).status == "error"
    assert (A, "live_migration") not in w.computes.sent
    assert domains(w.b, vm) == [] and held(w.db, vm) == [A] and held(w.db, uuid) == []


def test_no_valid_host_keeps_it_where_it_is(w):
    vm = build_on(w, A)
    with w.db.transaction() as s:
        s.query(Service).filter_by(host=B, binary="mininova-compute").one().disabled = True
    uuid = live_migrate(w, vm).get_json()["migration"]
    inst = row(w.db, vm)
    assert (inst.host, inst.vm_state, inst.task_state) == (A, states.ACTIVE, None)
    m = migration(w.db, uuid)
    assert m.status == "error" and m.dest_host is None
    assert held(w.db, vm) == [A]
    assert "No valid host" in timeline(w, vm)["events"][-1]["details"]


def test_repeated_reports_change_nothing_twice(w):
    vm = build_on(w, A)
    uuid = live_migrate(w, vm, host=B).get_json()["migration"]
    conductor = w.a.conductor
    assert conductor.live_migration_succeeded(CTXT, vm, uuid, A) is False
    assert conductor.live_migration_failed(CTXT, vm, uuid, A, "late", False) is False
    assert row(w.db, vm).host == B and migration(w.db, uuid).status == "completed"
    # A late start of the copy (redelivered cast) does nothing either.
    w.a.live_migration(CTXT, vm, uuid, B, {})
    assert row(w.db, vm).host == B and len(domains(w.b, vm)) == 1
    with w.db.transaction() as s:
        assert vm_migrations.get(s, uuid).status == "completed"


@pytest.mark.parametrize("step, status", [(2, "cancelled"),   # the copy stops: deleted on A
                                          (4, "completed")])  # too late: deleted on B
def test_a_delete_during_the_copy_leaves_nothing_anywhere(w, step, status):
    vm = build_on(w, A)
    answers = []

    def delete_at(n):
        if n == step:
            answers.append(w.client.delete("/v1/vms/%s" % vm, headers=w.admin).status_code)
    w.a.driver.on_copy = delete_at
    uuid = live_migrate(w, vm, host=B).get_json()["migration"]
    assert answers == [202]
    for thread in w.computes.threads:
        thread.join(30)
    assert migration(w.db, uuid).status == status
    with w.db.transaction() as s:
        assert db_api.instance_row(s, vm) is None
    assert domains(w.a, vm) == [] and domains(w.b, vm) == []
    assert held(w.db, vm) == [] and held(w.db, uuid) == []


class UnreachableThenBack(HookedDriver):
    """A destination whose hypervisor does not answer for its first two
    rollbacks (its libvirtd restarting)."""
    failures = 2

    def rollback_live_migration_at_destination(self, instance_id):
        if self.failures:
            self.failures -= 1
            raise exception.HypervisorError(reason="libvirtd is not answering")
        super().rollback_live_migration_at_destination(instance_id)


def test_the_destination_retries_its_cleanup_until_its_hypervisor_answers(
        conf, db, base_image):  # noqa: F811
    w = make_world(conf, db, base_image, drivers=(HookedDriver, UnreachableThenBack))
    naps = []
    w.b.live_migrator._sleep = naps.append

    def fail_at(n):
        if n == 1:
            raise exception.HypervisorError(reason="the destination's libvirtd went away")
    w.a.driver.on_copy = fail_at
    vm = build_on(w, A)
    uuid = live_migrate(w, vm, host=B).get_json()["migration"]
    assert migration(w.db, uuid).status == "error" and row(w.db, vm).host == A
    assert naps == [0.5, 1.0] and w.b.driver.failures == 0
    assert domains(w.b, vm) == [] and [d["power_state"] for d in domains(w.a, vm)] == [
        states.RUNNING]


def test_the_destination_never_removes_a_vm_it_owns(w):
    vm = build_on(w, B)
    assert w.b.live_migrator.rollback_live_migration_at_destination(CTXT, vm, "m-1") is False
    assert [d["power_state"] for d in domains(w.b, vm)] == [states.RUNNING]


def test_an_abort_that_overtakes_the_start_of_the_copy_stops_it(w):
    vm = build_on(w, A)
    prepare = w.b.driver.pre_live_migration

    def abort_first(instance, base, data):  # the abort cast is handled before the copy's
        with w.db.transaction() as s:
            move = vm_migrations.in_progress_for_instance(s, instance.id)
        w.a.live_migration_abort(CTXT, instance.id, move.uuid)
        return prepare(instance, base, data)
    w.b.driver.pre_live_migration = abort_first
    uuid = live_migrate(w, vm, host=B).get_json()["migration"]
    assert migration(w.db, uuid).status == "cancelled"
    assert row(w.db, vm).host == A and domains(w.b, vm) == []
    assert w.a.live_migrator._aborts == {}  # nothing kept once the copy ended


def start_copy_then_restart(w, vm):
    """The migration to B placed, prepared and "running", as when A's compute
    died during the copy: its outcome was never reported."""
    w.computes.managers[A] = type("Dead", (), {"live_migration": lambda *a: None})()
    uuid = live_migrate(w, vm, host=B).get_json()["migration"]
    w.computes.managers[A] = w.a
    assert migration(w.db, uuid).status == "running"
    return uuid


def test_a_copy_cut_short_by_a_restart_with_the_guest_still_here_fails(w):
    vm = build_on(w, A)
    uuid = start_copy_then_restart(w, vm)
    assert len(domains(w.b, vm)) == 1   # prepared there
    w.a.init_host(CTXT)
    assert migration(w.db, uuid).status == "error"
    inst = row(w.db, vm)
    assert (inst.host, inst.vm_state, inst.task_state) == (A, states.ACTIVE, None)
    assert domains(w.b, vm) == [] and held(w.db, vm) == [A] and held(w.db, uuid) == []
    assert "restarted during the copy" in timeline(w, vm)["message"]


def test_a_copy_cut_short_by_a_restart_after_the_guest_went_completes(w):
    vm = build_on(w, A)
    uuid = start_copy_then_restart(w, vm)
    w.a.driver.live_migration(vm, B, {})   # libvirtd finished it alone meanwhile
    w.a.init_host(CTXT)
    assert migration(w.db, uuid).status == "completed"
    inst = row(w.db, vm)
    assert (inst.host, inst.vm_state, inst.task_state) == (B, states.ACTIVE, None)
    assert [d["power_state"] for d in domains(w.b, vm)] == [states.RUNNING]
    assert held(w.db, vm) == [B] and held(w.db, uuid) == []
    assert timeline(w, vm)["result"] == "success"
