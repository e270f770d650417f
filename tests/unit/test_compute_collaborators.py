"""The compute's collaborators, each built alone with fakes: the in-memory
driver and a conductor that keeps VM rows in a dict. Moves in progress come
as the conductor's ``"migration"`` key."""
import threading
import uuid

import pytest
from oslo_config import cfg

from common import config, context, exception, states
from common.timeline import Timeline
from mininova_lab.waiting import wait_for
from nova_compute import events
from nova_compute.addresses import AddressWatcher
from nova_compute.audit_responder import AuditResponder
from nova_compute.builder import Builder
from nova_compute.deleter import Deleter
from nova_compute.inflight import BuildTracker, CancelRegistry
from common.locks import KeyedLocks
from nova_compute.manager import ComputeManager
from nova_compute.power_tasks import PowerTasks
from nova_compute.reconciler import EVACUATED, ORPHAN, VANISHED, Reconciler, Step
from nova_compute.retrying_conductor import RetryingConductor
from nova_compute.settler import StartupSettler
from nova_compute.virt import driver as virt_driver
from nova_compute.virt import fake

CTXT = context.RequestContext(project_id="p")
A, B = "host-a", "host-b"


class RowsConductor:
    """The conductor's side as compute sees it, over a dict of VM rows;
    ``calls`` records every report."""

    def __init__(self):
        self.rows, self.calls = {}, []

    def add(self, host=A, migration=None, **values):
        instance_id = str(uuid.uuid4())
        self.rows[instance_id] = dict(
            id=instance_id, name="vm", project_id="p", vcpus=1, memory_mb=64, root_gb=1,
            host=host, vm_state=states.ACTIVE, task_state=None, power_state="running",
            mac_address=None, ip_address=None, migration=migration)
        self.rows[instance_id].update(values)
        return instance_id

    def instance_get(self, ctxt, instance_id):
        return self.rows.get(instance_id)

    def instance_list_for_host(self, ctxt, host):
        return [r for r in self.rows.values()
                if r["host"] == host or (r["migration"] or {}).get("source_host") == host
                or (r["migration"] or {}).get("dest_host") == host]

    def __getattr__(self, method):  # every report: recorded, accepted
        def report(ctxt, *args, **kwargs):
            self.calls.append((method,) + args)
            return True
        return report


def migration(source=A, dest=B, type_="live-migration", status="running"):
    return {"id": 1, "uuid": "mig-1", "type": type_, "status": status, "source_host": source,
            "dest_host": dest}


def make_conf(tmp_path, host=A):
    conf = cfg.ConfigOpts()
    config.register_opts(conf)
    conf([], project="mininova", default_config_files=[])
    conf.set_override("host", host)
    conf.set_override("instances_path", str(tmp_path / "instances"), group="compute")
    return conf


@pytest.fixture
def base_image(tmp_path):
    path = tmp_path / "base.img"
    path.write_bytes(b"\0" * 1024)
    return str(path)


@pytest.fixture
def world(tmp_path):
    """The pieces a collaborator is built from, for host A."""
    class World:
        conf = make_conf(tmp_path)
        driver = fake.FakeDriver(conf)
        conductor = RowsConductor()
        locks = KeyedLocks()
        cancels = CancelRegistry()
        builds = BuildTracker()
        timeline = Timeline(conductor, A)
        addresses = AddressWatcher(driver, lambda *args: None)

        def domain(self, instance_id, base_image):
            """A running domain of that row's VM on this host."""
            self.driver.spawn(virt_driver.InstanceSpec(
                id=instance_id, name="vm", vcpus=1, memory_mb=64, root_gb=1, image_id="i",
                project_id="p"), base_image)

        def reports(self, method):
            return [c for c in self.conductor.calls if c[0] == method]
    w = World()
    w.driver.init_host(A)
    return w


def reconciler(w):
    return Reconciler(w.driver, w.conductor, w.locks, w.builds, w.conf)


def power_tasks(w):
    return PowerTasks(w.driver, w.conductor, w.locks, w.timeline, w.cancels, w.conf)


def deleter(w):
    return Deleter(w.driver, w.conductor, w.locks, w.timeline, w.cancels, w.addresses, A)


# -- the reconciler --------------------------------------------------------------------

def test_reconcile_leaves_moving_domains_alone_and_reaps_the_rest(world, base_image):
    w = world
    w.conf.set_override("reap_orphans", True, group="compute")
    arriving = w.conductor.add(host=B, migration=migration(B, A))
    leaving = w.conductor.add(host=A, migration=migration(A, B))   # its domain gone already
    evacuated = w.conductor.add(host=B, migration=migration(A, B, "evacuation", "accepted"))
    moved_on = w.conductor.add(host=B, migration=migration(A, B, status="completed"))
    vanished = w.conductor.add(host=A)
    for instance_id in (arriving, evacuated, moved_on):
        w.domain(instance_id, base_image)

    steps = reconciler(w).reconcile(CTXT)

    assert sorted(steps, key=lambda s: s.kind) == sorted([
        Step(EVACUATED, evacuated, "running"), Step(ORPHAN, moved_on, "running"),
        Step(VANISHED, vanished)], key=lambda s: s.kind)
    assert [d["id"] for d in w.driver.list_instances()] == [arriving]
    assert w.reports("instance_vanished") == [("instance_vanished", vanished, A)]
    # The evacuation's allocation here goes with the stale copy.
    assert w.reports("evacuation_source_cleaned") == [("evacuation_source_cleaned", "mig-1", A)]
    assert leaving not in str(w.conductor.calls)


def test_a_step_is_rechecked_against_a_fresh_row(world, base_image):
    """Planned as an orphan, but the row says the VM is arriving by now."""
    w = world
    w.conf.set_override("reap_orphans", True, group="compute")
    instance_id = w.conductor.add(host=B)
    w.domain(instance_id, base_image)
    w.conductor.rows[instance_id]["migration"] = migration(B, A)
    reconciler(w).apply(CTXT, Step(ORPHAN, instance_id, "running"))
    assert w.driver.instance_exists(instance_id)


def test_an_event_sync_waits_for_the_build(world, base_image):
    w = world
    instance_id = w.conductor.add()
    w.domain(instance_id, base_image)
    w.builds.started(instance_id)
    reconciler(w).sync_power_state(CTXT, instance_id)
    assert w.reports("instance_power_sync") == []
    assert w.builds.ended(instance_id)  # still due: the build never read the state
    reconciler(w).sync_power_state(CTXT, instance_id)
    assert w.reports("instance_power_sync") == [("instance_power_sync", instance_id, A,
                                                 "running")]


def test_an_event_sync_reports_at_once_when_the_vm_is_idle(world, base_image):
    w = world
    instance_id = w.conductor.add()
    w.domain(instance_id, base_image)
    w.driver.power_off(instance_id)
    answer = reconciler(w).sync_after_event(CTXT, instance_id, events.SETTLES_TO["stopped"])
    assert answer == events.DONE
    assert w.reports("instance_power_sync") == [("instance_power_sync", instance_id, A,
                                                 "shutdown")]


def test_an_event_sync_leaves_a_vm_to_the_task_holding_its_lock(world, base_image):
    """A hard reboot's destroy sends "stopped" while it holds the lock: no
    read then (it would be a stray SHUTOFF), the task reports its own end."""
    w = world
    instance_id = w.conductor.add()
    w.domain(instance_id, base_image)
    with w.locks.lock(instance_id):
        w.driver.power_off(instance_id)
        assert reconciler(w).sync_after_event(
            CTXT, instance_id, events.SETTLES_TO["stopped"]) == events.BUSY
        w.driver.power_on(instance_id)
    assert w.reports("instance_power_sync") == []
    assert reconciler(w).sync_after_event(CTXT, instance_id, None) == events.DONE
    assert w.reports("instance_power_sync") == [("instance_power_sync", instance_id, A,
                                                 "running")]


def test_an_event_sync_waits_while_the_domain_still_changes(world, base_image):
    """A "shutdown" event, but the domain reads running (a reboot going on):
    nothing reported until the read after the debounce."""
    w = world
    instance_id = w.conductor.add()
    w.domain(instance_id, base_image)
    assert reconciler(w).sync_after_event(
        CTXT, instance_id, events.SETTLES_TO["shutdown"]) == events.CHANGING
    assert w.reports("instance_power_sync") == []


# -- power tasks and deletes ---------------------------------------------------------------

def test_a_power_task_runs_for_the_owner_only(world, base_image):
    w = world
    mine = w.conductor.add(task_state=states.POWERING_OFF)
    moving = w.conductor.add(task_state=states.POWERING_OFF, migration=migration(A, B))
    for instance_id in (mine, moving):
        w.domain(instance_id, base_image)
        power_tasks(w).stop(CTXT, instance_id)
    assert w.driver.get_info(mine)["power_state"] == "shutdown"
    assert w.driver.get_info(moving)["power_state"] == "running"
    assert w.reports("instance_task_done") == [
        ("instance_task_done", mine, A, states.POWERING_OFF, "shutdown")]


class DeafGuestDriver(fake.FakeDriver):
    """Its guests ignore ACPI; ``waiting`` is set once a clean shutdown waits."""
    guest_ignores_acpi = True

    def __init__(self, conf, **kwargs):
        super().__init__(conf, **kwargs)
        self.waiting = threading.Event()

    def power_off(self, instance_id, timeout=0, cancel=None):
        self.waiting.set()
        super().power_off(instance_id, timeout, cancel)


def test_a_delete_cuts_a_power_tasks_wait_short(world, base_image):
    """PowerTasks and the Deleter share the CancelRegistry and the locks."""
    w = world
    w.driver = DeafGuestDriver(w.conf)
    w.driver.init_host(A)
    w.conf.set_override("shutdown_timeout", 300, group="compute")
    instance_id = w.conductor.add(task_state=states.POWERING_OFF)
    w.domain(instance_id, base_image)
    stop = threading.Thread(target=power_tasks(w).stop, args=(CTXT, instance_id))
    stop.start()
    assert w.driver.waiting.wait(10)
    deleter(w).terminate(CTXT, instance_id)
    wait_for(lambda: not stop.is_alive(), 30, what="the stop cut short")
    assert not w.driver.instance_exists(instance_id)
    assert w.reports("instance_terminated") == [("instance_terminated", instance_id, A)]


# -- builds ---------------------------------------------------------------------------------

class LocalImages:
    """An image cache whose every image is ``path``."""

    def __init__(self, path):
        self.path, self.cache_dir = path, None

    def fetch(self, image_id, url, checksum):
        return self.path


def builder(w, base_image):
    return Builder(w.driver, w.conductor, LocalImages(base_image), w.locks, w.timeline,
                   w.builds, reconciler(w), w.addresses, w.conf)


def test_a_build_runs_for_the_owner_only(world, base_image):
    w = world
    image = {"id": "img", "checksum": "x"}
    mine = w.conductor.add(task_state=states.SPAWNING, vm_state=states.BUILDING)
    moving = w.conductor.add(task_state=states.SPAWNING, vm_state=states.BUILDING,
                             migration=migration(B, A))
    for instance_id in (mine, moving):
        builder(w, base_image).build(CTXT, w.conductor.rows[instance_id], image)
    assert [d["id"] for d in w.driver.list_instances()] == [mine]
    assert [c[:4] for c in w.reports("instance_spawned")] == [
        ("instance_spawned", mine, A, "running")]


# -- start-up and audit ------------------------------------------------------------------------

def test_settling_finishes_deletes_and_leaves_moves_to_the_conductor(world, base_image):
    w = world
    deleting = w.conductor.add(task_state=states.DELETING)
    deleted_moving = w.conductor.add(task_state=states.DELETING, migration=migration(A, B))
    moving = w.conductor.add(task_state="migrating", migration=migration(A, B))
    interrupted = w.conductor.add(task_state=states.REBOOTING)
    for instance_id in (deleting, deleted_moving, moving, interrupted):
        w.domain(instance_id, base_image)
    StartupSettler(w.driver, w.conductor, w.locks, deleter(w), power_tasks(w),
                   w.conf).settle(CTXT)
    assert sorted(d["id"] for d in w.driver.list_instances()) == sorted([moving, interrupted])
    assert sorted(w.reports("instance_terminated")) == sorted([
        ("instance_terminated", deleting, A), ("instance_terminated", deleted_moving, A)])
    assert [c[1:3] for c in w.reports("instance_task_failed")] == [(interrupted, A)]


def test_audit_fix_spares_what_is_mine_or_moving(world, base_image):
    w = world
    responder = AuditResponder(w.driver, w.conductor, None, w.locks, w.addresses, w.conf)
    mine = w.conductor.add()
    moving = w.conductor.add(host=B, migration=migration(B, A))
    orphan = w.conductor.add(host=B)
    for instance_id in (mine, moving, orphan):
        w.domain(instance_id, base_image)
    got = responder.fix(CTXT, [mine, moving, orphan])
    assert got[mine].startswith("skipped:a live row puts it on this host")
    assert got[moving].startswith("skipped:it is moving from or to this host now")
    assert got[orphan] == "destroyed"
    assert sorted(d["id"] for d in w.driver.list_instances()) == sorted([mine, moving])


# -- the small shared pieces and the endpoint ----------------------------------------------

class AwayConductor:
    """Away for the first ``away`` calls."""

    def __init__(self, away):
        self.away = away

    def instance_get(self, ctxt, instance_id):
        if self.away:
            self.away -= 1
            raise exception.ServiceUnavailable(reason="away (injected)")
        return {"id": instance_id}


def test_reports_are_retried_while_the_conductor_is_away():
    slept = []
    retrying = RetryingConductor(AwayConductor(3), deadline=60, delay=0.5, sleep=slept.append)
    assert retrying.instance_get(CTXT, "vm") == {"id": "vm"}
    assert slept == [0.5, 1.0, 2.0]
    with pytest.raises(exception.ServiceUnavailable):
        RetryingConductor(AwayConductor(1), deadline=0, sleep=slept.append).instance_get(
            CTXT, "vm")


def test_every_rpc_method_is_a_method_of_the_endpoint(world):
    manager = ComputeManager(world.driver, world.conductor, None, world.conf)
    for name in ComputeManager.RPC_METHODS:
        assert callable(getattr(manager, name)), name
