"""Evacuate end to end in one process: the /v1 action (admin), the
conductor's evacuate task, the scheduler's move placement and two compute
hosts on the in-memory fake driver; then the dead host's start-up, which
destroys its stale copy before it reports anything."""
import datetime

import pytest

from common import context, exception, payloads, states
from common.db import allocations, instance_metadata, vm_migrations
from common.db import api as db_api
from common.db.models import Instance, Service, utcnow
from common.timeline import DbSink, Timeline
from nova_api.app import create_app
from nova_compute.imagecache import ImageCache, read_file_chunks
from nova_compute.manager import ComputeManager
from nova_compute.virt.fake import FakeDriver
from nova_conductor.manager import ConductorManager
from nova_conductor.tasks.evacuate import EvacuateTask
from nova_scheduler.manager import SchedulerManager
from tests.conftest import Recorder
from tests.unit.conftest import auth_headers
from tests.unit.test_compute_manager import base_image  # noqa: F401

A, B = "hosta", "hostb"
CTXT = context.RequestContext(project_id="p")


class HostConf:
    """The test's conf as seen by the compute of ``host``."""

    def __init__(self, conf, host):
        self._conf, self.host = conf, host

    def __getattr__(self, name):
        return getattr(self._conf, name)


class Computes:
    """The compute RPC client: each cast runs at once on its host's manager."""

    def __init__(self):
        self.managers = {}
        self.can_evacuate = True

    def evacuate_instance(self, ctxt, host, instance_id, image, migration_uuid):
        self.managers[host].evacuate_instance(ctxt, instance_id, image, migration_uuid)


class Conductor:
    """The API's BuildClient: an evacuation runs at once in the conductor."""

    def __init__(self, conductor):
        self.conductor = conductor
        self.deferred = None  # a list: casts kept there instead of run

    def evacuate_instance(self, ctxt, instance_id, migration_uuid, host=None):
        if self.deferred is not None:
            self.deferred.append((ctxt, instance_id, migration_uuid, host))
            return
        self.conductor.evacuate_instance(ctxt, instance_id, migration_uuid, host)


@pytest.fixture
def w(conf, db, base_image):  # noqa: F811
    computes = Computes()
    task = EvacuateTask(db, SchedulerManager(db, Recorder(), conf), computes,
                        Timeline(DbSink(db), "conductor"))
    conductor = ConductorManager(db, evacuate_task=task)
    path, checksum = base_image
    for host in (A, B):
        hconf = HostConf(conf, host)
        driver = FakeDriver(hconf)
        driver.init_host(host)
        cache = ImageCache(conf.compute.image_cache_path,
                           fetcher=lambda url: read_file_chunks(path))
        computes.managers[host] = ComputeManager(driver, conductor, cache, hconf)
        heartbeat(computes.managers[host])
    api_casts = Conductor(conductor)
    app = create_app(conf, db, api_casts, Recorder())
    w = type("World", (), {})()
    w.db, w.conf, w.conductor, w.computes = db, conf, conductor, computes
    w.api_casts = api_casts
    w.a, w.b = computes.managers[A], computes.managers[B]
    w.client = app.test_client()
    w.admin = auth_headers(db, "p", "admin")
    w.member = auth_headers(db, "p", "member")
    w.image = (path, checksum)
    return w


def heartbeat(manager):
    manager.heartbeat(CTXT)


def host_down(db, host, seconds=3600):
    with db.transaction() as s:
        svc = s.query(Service).filter_by(host=host, binary="mininova-compute").one()
        svc.last_heartbeat = utcnow() - datetime.timedelta(seconds=seconds)


def build_on(w, host, name="vm1"):
    """A VM built on ``host`` (as the scheduler and the build leave it)."""
    with w.db.transaction() as s:
        image = db_api.image_create(s, name="img-" + name, size=4096, checksum=w.image[1],
                                    min_ram=0, min_disk=0, location=w.image[0],
                                    disk_format="qcow2", status="active")
        inst = db_api.instance_create(s, name=name, project_id="p", image_id=image.id,
                                      flavor_id="1", vcpus=1, memory_mb=128, root_gb=1,
                                      vm_state=states.BUILDING, task_state=states.SPAWNING,
                                      host=host, mac_address="52:54:00:00:00:2a")
        allocations.allocate(s, inst.id, host, allocations.Resources(1, 128, 1),
                             (16.0, 1.5, 1.0))
        instance, image = payloads.instance(inst), payloads.image(image)
    w.computes.managers[host].build_instance(CTXT, instance, image)
    return instance["id"]


def evacuate(w, vm, headers=None, **args):
    return w.client.post("/v1/vms/%s/action" % vm, json={"evacuate": args},
                         headers=headers or w.admin)


def row(db, vm):
    with db.transaction() as s:
        return db_api.instance_get(s, vm)


def held(db, consumer):
    with db.transaction() as s:
        return sorted(a.host for a in allocations.of_consumer(s, consumer))


def migration(db, uuid):
    with db.transaction() as s:
        return vm_migrations.get(s, uuid)


def running_on(w, vm):
    return sorted(h for h, m in w.computes.managers.items()
                  if any(i["id"] == vm and i["power_state"] == states.RUNNING
                         for i in m.driver.list_instances()))


def test_evacuate_rebuilds_on_another_host_and_the_dead_host_destroys_its_copy(w):
    vm = build_on(w, A)
    with w.db.transaction() as s:
        instance_metadata.replace(s, vm, {"role": "web"})
    before = row(w.db, vm)
    assert before.vm_state == states.ACTIVE and before.ip_address
    host_down(w.db, A)  # A's compute died; its hypervisor still runs the guest
    r = evacuate(w, vm)
    assert r.status_code == 202, r.get_json()
    uuid = r.get_json()["migration"]
    after = row(w.db, vm)
    assert (after.host, after.vm_state, after.task_state, after.power_state) == (
        B, states.ACTIVE, None, states.RUNNING)
    assert (after.ip_address, after.mac_address) == (before.ip_address, before.mac_address)
    assert w.b.driver.dhcp_hosts[vm] == (before.mac_address, before.ip_address)
    drive = w.b.driver._domains[vm].spec.config_drive  # written again on B
    assert drive.fixed_ip.address.startswith(before.ip_address + "/")
    assert dict(drive.metadata) == {"role": "web"}
    m = migration(w.db, uuid)
    assert (m.migration_type, m.source_host, m.dest_host, m.status) == (
        "evacuation", A, B, "done")
    assert held(w.db, vm) == [B] and held(w.db, uuid) == [A]
    assert running_on(w, vm) == [A, B]  # the split brain of a host that is only "down"
    timeline = w.client.get("/v1/vms/%s/actions" % vm, headers=w.admin).get_json()["actions"]
    assert (timeline[0]["action"], timeline[0]["result"]) == ("evacuate", "success")
    steps = w.client.get("/v1/vms/%s/actions/%s" % (vm, timeline[0]["request_id"]),
                         headers=w.admin).get_json()["action"]["events"]
    assert [(e["event"], e["host"]) for e in steps][1:] == [
        ("scheduled", "conductor"), ("rebuild sent", "conductor"), ("rebuilt from image", B),
        ("evacuated", B)]

    # A's compute restarts: its copy goes before it reports anything.
    assert w.a.destroy_evacuated_instances(CTXT) == [vm]
    assert running_on(w, vm) == [B] and vm not in w.a.driver.dhcp_hosts
    assert migration(w.db, uuid).status == "completed"
    assert held(w.db, uuid) == [] and held(w.db, vm) == [B]
    assert w.a.destroy_evacuated_instances(CTXT) == []  # nothing left to clean
    heartbeat(w.a)
    w.a.reconcile(CTXT)
    w.b.reconcile(CTXT)
    assert running_on(w, vm) == [B] and row(w.db, vm).vm_state == states.ACTIVE
    with w.db.transaction() as s:
        assert {a.host: a.memory_mb for a in allocations.all_allocations(s)} == {B: 128}


def test_a_stopped_vm_is_evacuated_stopped(w):
    vm = build_on(w, A)
    with w.db.transaction() as s:
        db_api.instance_update_if(s, vm, {"task_state": states.POWERING_OFF})
    w.a.stop_instance(CTXT, vm)
    host_down(w.db, A)
    assert evacuate(w, vm, host=B).status_code == 202
    after = row(w.db, vm)
    assert (after.host, after.vm_state, after.power_state) == (B, states.STOPPED,
                                                               states.SHUTDOWN)


def message(r, code):
    assert r.status_code == code, (r.status_code, r.get_json())
    return r.get_json()["error"]["message"]


def test_refusals_name_why(w):
    vm = build_on(w, A)
    assert "still up" in message(evacuate(w, vm), 409)
    assert "admin" in message(evacuate(w, vm, headers=w.member), 403)
    host_down(w.db, A)
    assert "own host" in message(evacuate(w, vm, host=A), 400)
    assert "nowhere" in message(evacuate(w, vm, host="nowhere"), 404)
    host_down(w.db, B)
    assert "is down" in message(evacuate(w, vm, host=B), 400)
    heartbeat(w.b)
    with w.db.transaction() as s:
        db_api.instance_update_if(s, vm, {"task_state": states.REBOOTING})
    assert "task rebooting" in message(evacuate(w, vm), 409)
    assert "bogus" in message(w.client.post(
        "/v1/vms/%s/action" % vm, json={"evacuate": {"bogus": 1}}, headers=w.admin), 400)
    after = row(w.db, vm)
    assert (after.host, after.task_state) == (A, states.REBOOTING)
    with w.db.transaction() as s:
        assert vm_migrations.in_progress_for_instance(s, vm) is None


def test_no_valid_host_leaves_the_vm_as_it_was(w):
    vm = build_on(w, A)
    host_down(w.db, A)
    host_down(w.db, B)
    assert evacuate(w, vm).status_code == 202
    after = row(w.db, vm)
    assert (after.host, after.vm_state, after.task_state) == (A, states.ACTIVE, None)
    assert "No valid host" in after.fault
    assert held(w.db, vm) == [A]
    with w.db.transaction() as s:
        (m,) = s.execute(vm_migrations.sa.select(vm_migrations.M.status)).all()
    assert m.status == "error"


def test_a_failed_rebuild_leaves_nothing_on_the_destination(w, monkeypatch):
    vm = build_on(w, A)
    host_down(w.db, A)

    def broken(*args, **kwargs):
        raise exception.HypervisorError(reason="disk full")
    monkeypatch.setattr(w.b.driver, "rebuild", broken)
    uuid = evacuate(w, vm).get_json()["migration"]
    after = row(w.db, vm)
    assert (after.host, after.vm_state, after.task_state) == (A, states.ERROR, None)
    assert "disk full" in after.fault and B in after.fault
    assert w.b.driver.list_instances() == [] and vm not in w.b.driver.dhcp_hosts
    assert held(w.db, vm) == [A] and held(w.db, uuid) == []
    assert migration(w.db, uuid).status == "failed"
    # Back up, A keeps its copy: it is the VM's (in ERROR, to be acted on).
    assert w.a.destroy_evacuated_instances(CTXT) == []
    assert running_on(w, vm) == [A]


def test_the_rebuild_is_skipped_unless_the_vm_is_rebuild_spawning_here(w):
    vm = build_on(w, A)
    image = {"id": row(w.db, vm).image_id, "checksum": w.image[1]}
    w.b.evacuate_instance(CTXT, vm, image, "no-such-migration")
    assert w.b.driver.list_instances() == []
    assert row(w.db, vm).host == A


def test_a_redelivered_evacuation_cast_places_once(w):
    vm = build_on(w, A)
    host_down(w.db, A)
    uuid = evacuate(w, vm).get_json()["migration"]
    w.conductor.evacuate_instance(CTXT, vm, uuid)  # redelivered after the end: nothing
    assert held(w.db, vm) == [B] and row(w.db, vm).host == B
    assert len(w.b.driver.list_instances()) == 1


def nova_evacuate(w, vm, args, headers=None):
    return w.client.post("/compute/v2.1/servers/%s/action" % vm, json={"evacuate": args},
                         headers=headers or w.admin)


def nova_fault(r, code):
    assert r.status_code == code, (r.status_code, r.get_json())
    (body,) = r.get_json().values()
    return body["message"]


def test_nova_evacuate_at_2_1(w):
    vm = build_on(w, A)
    assert "still up" in nova_fault(nova_evacuate(w, vm, {"onSharedStorage": False}), 400)
    host_down(w.db, A)
    assert "onSharedStorage" in nova_fault(nova_evacuate(w, vm, {}), 400)
    assert "shared" in nova_fault(nova_evacuate(w, vm, {"onSharedStorage": True}), 400)
    assert nova_fault(nova_evacuate(w, vm, {"onSharedStorage": False}, headers=w.member), 403)
    r = nova_evacuate(w, vm, {"host": B, "onSharedStorage": "false", "adminPass": "pw"})
    assert r.status_code == 200 and r.get_json() == {"adminPass": "pw"}
    assert (row(w.db, vm).host, row(w.db, vm).vm_state) == (B, states.ACTIVE)
    r = w.client.get("/compute/v2.1/servers/%s" % vm, headers=w.admin)
    assert r.get_json()["server"]["status"] == "ACTIVE"


def test_the_audit_counts_a_done_evacuation_until_its_source_cleans(w):
    from nova_manage import audit, audit_findings
    vm = build_on(w, A)
    host_down(w.db, A)
    uuid = evacuate(w, vm).get_json()["migration"]
    assert held(w.db, uuid) == [A]
    view = audit.observe_db(w.db)
    assert audit_findings.find_orphans(view, {}) == []
    w.a.destroy_evacuated_instances(CTXT)
    assert audit_findings.find_orphans(audit.observe_db(w.db), {}) == []


def test_the_source_back_during_the_rebuild_destroys_its_copy_and_frees_its_allocation(w):
    vm = build_on(w, A)
    host_down(w.db, A)
    rebuild = w.b.driver.rebuild

    def source_back_first(*args, **kwargs):
        heartbeat(w.a)  # A is back while B rebuilds: its reconcile sees a stale copy
        w.a.reconcile(CTXT)
        return rebuild(*args, **kwargs)
    w.b.driver.rebuild = source_back_first
    uuid = evacuate(w, vm).get_json()["migration"]
    assert running_on(w, vm) == [B]
    assert migration(w.db, uuid).status == "completed"  # its source cleaned already
    assert held(w.db, uuid) == [] and held(w.db, vm) == [B]
    assert row(w.db, vm).vm_state == states.ACTIVE


def test_a_rebuild_cast_that_could_not_be_sent_is_sent_again_on_redelivery(w):
    vm = build_on(w, A)
    host_down(w.db, A)
    w.api_casts.deferred = []
    uuid = evacuate(w, vm).get_json()["migration"]
    (cast,) = w.api_casts.deferred
    send = w.computes.evacuate_instance

    def broker_away(*args, **kwargs):
        raise exception.ServiceUnavailable(reason="broker away")
    w.computes.evacuate_instance = broker_away
    with pytest.raises(exception.ServiceUnavailable):  # the RPC server requeues the cast
        w.conductor.evacuate_instance(*cast)
    after = row(w.db, vm)
    assert (after.host, after.task_state) == (B, states.REBUILD_SPAWNING)
    w.computes.evacuate_instance = send
    w.conductor.evacuate_instance(*cast)  # redelivered: the rebuild is sent again
    assert (row(w.db, vm).host, row(w.db, vm).vm_state) == (B, states.ACTIVE)
    assert held(w.db, vm) == [B] and held(w.db, uuid) == [A]


def test_a_source_that_was_only_cut_off_destroys_its_copy_at_its_next_reconcile(w):
    vm = build_on(w, A)
    host_down(w.db, A)  # A's compute lives on, unheard (a network cut)
    uuid = evacuate(w, vm).get_json()["migration"]
    assert running_on(w, vm) == [A, B]
    heartbeat(w.a)  # the cut heals: no restart, so no start-up destroy
    w.a.reconcile(CTXT)
    assert running_on(w, vm) == [B]
    assert migration(w.db, uuid).status == "completed" and held(w.db, uuid) == []


def test_compute_hosts_capped_below_evacuation_leave_the_vm_as_it_was(w):
    vm = build_on(w, A)
    host_down(w.db, A)
    w.computes.can_evacuate = False  # [upgrade_levels] compute below 1.3
    uuid = evacuate(w, vm).get_json()["migration"]
    after = row(w.db, vm)
    assert (after.host, after.vm_state, after.task_state) == (A, states.ACTIVE, None)
    assert "not all upgraded" in after.fault
    assert held(w.db, vm) == [A] and held(w.db, uuid) == []
    assert migration(w.db, uuid).status == "error"


def test_the_compute_client_says_whether_it_may_send_an_evacuation():
    from common import rpc
    from nova_compute.rpcapi import ComputeRPCAPI
    transport = rpc.get_transport("memory://evac-cap")
    assert ComputeRPCAPI(transport).can_evacuate
    assert not ComputeRPCAPI(transport, version_cap="1.2").can_evacuate


def age(db, vm, seconds):
    """The VM's last change ``seconds`` ago."""
    with db.transaction() as s:
        s.query(Instance).filter_by(id=vm).update(
            {"updated_at": utcnow() - datetime.timedelta(seconds=seconds)})


def test_an_evacuation_no_conductor_placed_is_given_up_by_the_watchdog(w):
    from nova_conductor.watchdog import Watchdog
    vm = build_on(w, A)
    host_down(w.db, A)
    w.api_casts.deferred = []  # the cast to the conductor is lost
    uuid = evacuate(w, vm).get_json()["migration"]
    watchdog = Watchdog(w.db, Recorder(), Recorder(), w.conf)
    assert watchdog.run()["expired"] == []  # not yet past build_timeout
    age(w.db, vm, w.conf.compute.build_timeout + 1)
    assert watchdog.run()["expired"] == [vm]
    after = row(w.db, vm)
    assert (after.host, after.vm_state, after.task_state) == (A, states.ACTIVE, None)
    assert "Evacuation timed out" in after.fault
    assert migration(w.db, uuid).status == "error" and held(w.db, vm) == [A]
    (cast,) = w.api_casts.deferred
    w.conductor.evacuate_instance(*cast)  # the lost cast after all: nothing happens
    assert row(w.db, vm).host == A and held(w.db, uuid) == []


def test_the_watchdog_leaves_a_plain_rebuild_and_a_placed_evacuation_alone(w):
    from nova_conductor.watchdog import Watchdog
    vm = build_on(w, A)
    with w.db.transaction() as s:
        db_api.instance_update_if(s, vm, {"task_state": states.REBUILDING})
    age(w.db, vm, 86400)
    assert Watchdog(w.db, Recorder(), Recorder(), w.conf).run()["expired"] == []
    assert row(w.db, vm).task_state == states.REBUILDING
