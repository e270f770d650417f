"""Deletes: a delete wins over a task in progress (even a clean shutdown the
guest ignores), over a placement that happens while it starts, and over a
build still queued; it gives the claim and the quota back exactly once; what
a given-up build left on a host goes; the watchdog gives up only the build it
looked at."""
import datetime
import os
import threading

import pytest
import sqlalchemy as sa

from common import states
from common.db import allocations
from common.db import api as db_api
from common.db import auth as db_auth
from common.db.allocations import Resources
from common.db.models import Instance, utcnow
from common.timeline import DbSink, Timeline
from nova_api.app import create_app
from nova_compute.virt import fake_libvirt
from nova_conductor.manager import ConductorManager
from nova_conductor.watchdog import Watchdog
from tests.unit.conftest import token_for
from tests.unit.test_compute_manager import (  # noqa: F401 (fixture)
    CTXT, base_image, clean_up, make_manager, placed_vm, row)
from mininova_lab.waiting import wait_for


@pytest.fixture
def managers(conf, db):
    """make(driver_cls) -> a compute manager; destroyed and cleaned up after."""
    made = []

    def make(driver_cls=fake_libvirt.FakeLibvirtDriver):
        made.append(make_manager(conf, db, driver_cls))
        return made[-1]
    yield make
    for manager in made:
        clean_up(manager.driver)


def build(manager, db, conf, base_image, name="vm1"):
    instance, image = placed_vm(db, conf, *base_image, name=name)
    manager.sources[image["id"]] = base_image[0]
    manager.build_instance(CTXT, instance, image)
    return instance, image


def set_task(db, instance_id, task):
    with db.transaction() as s:
        db_api.instance_update_if(s, instance_id, {"task_state": task})


def domains(manager):
    return [i["id"] for i in manager.driver.list_instances()]


# -- a delete wins over a clean shutdown the guest ignores -----------------------

class _DeafGuest:
    """A domain whose guest ignores the ACPI power button."""

    def __init__(self, dom):
        self._dom = dom

    def shutdown(self):
        pass

    def __getattr__(self, name):
        return getattr(self._dom, name)


class AcpiDeafDriver(fake_libvirt.FakeLibvirtDriver):
    """Its guests ignore ACPI: a clean power-off waits its whole timeout
    (the driver's own wait), unless cancelled. ``waiting`` is set once one waits."""

    def __init__(self, conf, **kwargs):
        super().__init__(conf, **kwargs)
        self.waiting = threading.Event()

    def _clean_shutdown(self, dom, timeout, cancel):
        self.waiting.set()
        return super()._clean_shutdown(_DeafGuest(dom), timeout, cancel)


def test_a_delete_cuts_a_clean_shutdown_short(managers, db, conf, base_image):
    conf.set_override("shutdown_timeout", 120, group="compute")
    manager = managers(AcpiDeafDriver)
    instance, _ = build(manager, db, conf, base_image)
    vm = instance["id"]
    set_task(db, vm, states.POWERING_OFF)                # the API accepted a stop
    stop = threading.Thread(target=manager.stop_instance, args=(CTXT, vm), daemon=True)
    stop.start()
    assert manager.driver.waiting.wait(30)               # the guest ignores it: waiting
    set_task(db, vm, states.DELETING)                    # the API accepted a delete
    delete = threading.Thread(target=manager.terminate_instance, args=(CTXT, vm), daemon=True)
    delete.start()
    # Well before shutdown_timeout (120 s): the delete does not wait behind the stop.
    wait_for(lambda: not stop.is_alive() and not delete.is_alive(), 60,
             what="the stop cut short and the delete done")
    assert row(db, vm) is None and domains(manager) == []


# -- a delete wins over a placement made as it starts ------------------------------

class PlacedMeanwhile(Timeline):
    """The scheduler places the VM on h1 just as the API's delete starts
    (between the delete's read of the VM and its own write)."""

    def __init__(self, db, host):
        super().__init__(DbSink(db), host)
        self.db = db

    def start_action(self, ctxt, instance_id, action):
        super().start_action(ctxt, instance_id, action)
        with self.db.transaction() as s:
            db_api.instance_update_if(s, instance_id, {"host": "h1",
                                                       "task_state": states.SPAWNING})


@pytest.fixture
def api(conf, db, image, recorder):
    app = create_app(conf, db, recorder(), recorder())
    client = app.test_client()
    client.environ_base["HTTP_X_AUTH_TOKEN"] = token_for(db, "p")
    client.vm_service = app.extensions["mininova"]["vm_service"]
    client.project_id = "p"
    return client


def create(api):
    r = api.post("/v1/vms", json={"name": "web1", "image": "blank", "flavor": "m1.tiny"})
    assert r.status_code == 202, r.get_json()
    return r.get_json()["vm"]["id"]


def test_a_vm_placed_as_its_delete_starts_is_deleted_by_its_host(api, db):
    vm = create(api)
    api.vm_service.timeline = PlacedMeanwhile(db, "api")
    assert api.delete("/v1/vms/" + vm).status_code == 202
    # Not deleted by the API behind the host's back: the host is told.
    assert row(db, vm).task_state == states.DELETING
    assert [(m, a) for m, a, _ in api.vm_service.compute_rpcapi.calls] == [
        ("terminate_instance", ("h1", vm))]


# -- claim and quota come back once ----------------------------------------------

def usage(db, project_id):
    with db.transaction() as s:
        return db_auth.quota_usage(s, project_id)


def test_a_delete_gives_claim_and_quota_back_once(api, db):
    vm = create(api)
    assert usage(db, "p") == {"instances": 1, "cores": 1, "ram": 128}
    conductor = ConductorManager(db)
    conductor.service_heartbeat(CTXT, "h1", "mininova-compute",
                                {"vcpus": 4, "memory_mb": 4096, "local_gb": 50})
    with db.transaction() as s:  # placed on h1 and built there
        assert allocations.allocate(s, vm, "h1", Resources(1, 128, 1), (16.0, 1.5, 1.0))
        db_api.instance_update_if(s, vm, {"host": "h1", "task_state": states.SPAWNING})
    assert conductor.instance_spawned(CTXT, vm, "h1", "running")
    assert api.delete("/v1/vms/" + vm).status_code == 202
    assert conductor.instance_terminated(CTXT, vm, "h1")
    assert not conductor.instance_terminated(CTXT, vm, "h1")  # redelivered
    assert usage(db, "p") == {"instances": 0, "cores": 0, "ram": 0}
    with db.transaction() as s:
        (_, node), = db_api.compute_hosts(s)
        assert (node.vcpus_used, node.memory_mb_used, node.local_gb_used) == (0, 0, 0)


# -- a build that arrives after the delete does nothing ------------------------------

class CountingDriver(fake_libvirt.FakeLibvirtDriver):
    spawns = 0

    def spawn(self, spec, base_image_path, step=None):
        self.spawns += 1
        super().spawn(spec, base_image_path, step=step)


def test_a_build_queued_behind_a_delete_spawns_nothing(managers, db, conf, base_image):
    manager = managers(CountingDriver)
    instance, image = placed_vm(db, conf, *base_image)
    manager.sources[image["id"]] = base_image[0]
    set_task(db, instance["id"], states.DELETING)
    manager.build_instance(CTXT, instance, image)
    assert manager.driver.spawns == 0 and domains(manager) == []


# -- what a given-up build left behind goes --------------------------------------

def test_reap_destroys_what_given_up_builds_left(managers, db, conf, base_image):
    manager = managers()
    given_up, _ = build(manager, db, conf, base_image, "given-up")
    broken, _ = build(manager, db, conf, base_image, "broken")
    with db.transaction() as s:
        # The watchdog gave this build up before its report came: it never ran.
        db_api.instance_update_if(s, given_up["id"], {
            "vm_state": states.ERROR, "task_state": None, "launched_at": None})
        # This one ran and then broke: its domain stays for a person to look at.
        db_api.instance_update_if(s, broken["id"], {"vm_state": states.ERROR})
    assert manager.reap_failed_builds(CTXT) == [given_up["id"]]
    assert domains(manager) == [broken["id"]]
    assert not os.path.exists(os.path.join(conf.compute.instances_path, given_up["id"]))
    assert manager.reap_failed_builds(CTXT) == []  # nothing left to do


# -- the watchdog gives up only the build it looked at ----------------------------------

def test_the_watchdog_leaves_a_build_that_started_again(conf, db, recorder, base_image):
    """Read as stuck, then (before the watchdog's write) failed on its host
    and sent back to the scheduler, which placed it on the same host again:
    same task, same host, but a new build - not the stuck one."""
    conf.set_override("build_timeout", 60, group="compute")
    instance, _ = placed_vm(db, conf, *base_image)
    vm = instance["id"]
    with db.transaction() as s:
        s.execute(sa.update(Instance).where(Instance.id == vm).values(
            updated_at=utcnow() - datetime.timedelta(seconds=61)))
        stuck = s.execute(sa.select(Instance.id, Instance.host, Instance.vm_state,
                                    Instance.task_state, Instance.updated_at)
                          .where(Instance.id == vm)).one()
        db_api.instance_update_if(s, vm, {"task_state": states.SPAWNING})  # the new build
    dog = Watchdog(db, recorder(), recorder(), conf)
    assert dog._expire_build(stuck, utcnow(), 60) is False
    inst = row(db, vm)
    assert (inst.vm_state, inst.task_state) == (states.BUILDING, states.SPAWNING)
