"""Resize and cold migration end to end in one process: the API's
MoveService casts to the conductor's migrate task, which claims through the
real scheduler and drives two compute hosts (the in-memory fake driver) over
the in-memory RPC transport; the DB is SQLite."""
import hashlib
import threading
import uuid

import pytest
import sqlalchemy as sa
from oslo_config import cfg

from common import config, context, exception, rpc, states
from common.db import allocations, auth, vm_migrations
from common.db import api as db_api
from common.db import flavors as db_flavors
from common.db.models import ComputeNode
from common.timeline import DbSink, Timeline
from mininova_lab.waiting import wait_for
from nova_api.move_service import MoveService
from nova_api.vm_service import VMService
from nova_compute import rpcapi as compute_rpcapi
from nova_compute.imagecache import ImageCache, read_file_chunks
from nova_compute.manager import ComputeManager
from nova_compute.virt import fake
from nova_conductor import rpcapi as conductor_rpcapi
from nova_conductor.manager import ConductorManager
from nova_conductor.tasks.migrate import MigrateTask
from nova_scheduler import rpcapi as scheduler_rpcapi
from nova_scheduler.manager import SchedulerManager
from common import payloads
from tests.unit.test_scheduler import add_host

CTXT = context.RequestContext(project_id="p", user_id="u")
ADMIN = context.RequestContext(project_id="p", user_id="u", is_admin=True, roles=["admin"])
DEADLINE = 30


def host_conf(tmp_path, host):
    c = cfg.ConfigOpts()
    config.register_opts(c)
    c([], project="mininova", default_config_files=[])
    c.set_override("state_path", str(tmp_path))
    c.set_override("host", host)
    c.set_override("instances_path", str(tmp_path / host / "instances"), group="compute")
    c.set_override("image_cache_path", str(tmp_path / host / "_base"), group="compute")
    c.set_override("shutdown_timeout", 0, group="compute")
    c.set_override("move_step_timeout", 5, group="conductor")
    return c


class FailingFinishDriver(fake.FakeDriver):
    """A destination whose finish_migration fails (nothing left, as the
    contract says)."""

    def finish_migration(self, instance, disk_info, base_image_path, power_on=True):
        raise exception.MigrationError(instance=instance.id, reason="no room for the disk")


class Stack:
    def __init__(self, conf, db, tmp_path, drivers=None):
        self.db, self.conf, self.hosts = db, conf, {}
        self.transport = rpc.get_transport("memory://%s" % uuid.uuid4().hex)
        conductor_api = conductor_rpcapi.ConductorRPCAPI(self.transport, timeout=10)
        task = MigrateTask(db, scheduler_rpcapi.SchedulerRPCAPI(self.transport, timeout=10),
                           compute_rpcapi.ComputeRPCAPI(self.transport),
                           Timeline(DbSink(db), "conductor"), conf)
        self.task = task
        self.conductor = ConductorManager(db, migrate_task=task)
        scheduler = SchedulerManager(db, conductor_api, conf)
        self.servers = [
            rpc.RPCServer(self.transport, rpc.Target(conductor_rpcapi.TOPIC,
                                                     version=conductor_rpcapi.VERSION),
                          [self.conductor], workers=4),
            rpc.RPCServer(self.transport, rpc.Target(scheduler_rpcapi.TOPIC,
                                                     version=scheduler_rpcapi.VERSION),
                          [scheduler], workers=2)]
        self.sources = {}
        for host in ("h1", "h2"):
            hconf = host_conf(tmp_path, host)
            driver = (drivers or {}).get(host, fake.FakeDriver)(hconf)
            driver.init_host(host)
            cache = ImageCache(hconf.compute.image_cache_path, fetcher=lambda url: (
                read_file_chunks(self.sources.get(url.split("/")[-2], "/no/such/file"))))
            manager = ComputeManager(driver, ConductorManager(db), cache, hconf)
            self.hosts[host] = manager
            self.servers.append(rpc.RPCServer(
                self.transport, rpc.Target(compute_rpcapi.TOPIC, server=host,
                                           version=compute_rpcapi.VERSION),
                [manager], workers=4))
            add_host(db, host, vcpus=4, memory_mb=4096, local_gb=100)
        for srv in self.servers:
            srv.start()
        self.api = MoveService(db, conductor_api, quota_defaults={
            "instances": 10, "cores": 20, "ram": 51200})
        with db.transaction() as s:
            for name, vcpus, ram, disk in (("small", 1, 128, 1), ("big", 2, 256, 2),
                                           ("tiny-disk", 1, 128, 0)):
                db_flavors.create(s, name, vcpus, ram, disk, flavor_id=name)
            auth.project_create(s, "p", project_id="p")

    def stop(self):
        for srv in self.servers:
            srv.stop()
        for srv in self.servers:
            srv.wait(timeout=5)

    def boot(self, tmp_path, host="h1", name="vm"):
        """An ACTIVE VM of flavor small on ``host``, built by its compute."""
        src = tmp_path / ("img-%s" % uuid.uuid4().hex[:6])
        src.write_bytes(b"QFI\xfb" + b"\0" * 4092)
        checksum = hashlib.sha256(src.read_bytes()).hexdigest()
        with self.db.transaction() as s:
            image = db_api.image_create(s, name="img", size=4096, checksum=checksum, min_ram=0,
                                        min_disk=0, location=str(src), disk_format="qcow2",
                                        status="active")
            inst = db_api.instance_create(s, name=name, project_id="p", image_id=image.id,
                                          flavor_id="small", vcpus=1, memory_mb=128, root_gb=1,
                                          vm_state=states.BUILDING, task_state=states.SPAWNING,
                                          host=host, mac_address="52:54:00:00:00:2a")
            allocations.allocate(s, inst.id, host, allocations.Resources(1, 128, 1),
                                 (16.0, 1.5, 1.0))
            auth.quota_reserve(s, "p", self.api.quota_defaults, 1, 128)
            instance, image = payloads.instance(inst), payloads.image(image)
        self.sources[image["id"]] = str(src)
        self.hosts[host].build_instance(CTXT, instance, image)
        assert row(self.db, instance["id"]).vm_state == states.ACTIVE
        return instance["id"]

    def held(self, consumer):
        with self.db.transaction() as s:
            return {(a.host, a.vcpus, a.memory_mb, a.disk_gb)
                    for a in allocations.of_consumer(s, consumer)}

    def domains(self, host):
        return {d["id"]: d["power_state"] for d in self.hosts[host].driver.list_instances()}

    def usage(self):
        with self.db.transaction() as s:
            used = auth.quota_usage(s, "p")
        return used["cores"], used["ram"]

    def migration(self, instance_id):
        with self.db.transaction() as s:
            return vm_migrations.listing(s, instance_id=instance_id)[0]


def row(db, instance_id):
    with db.transaction() as s:
        return db_api.instance_row(s, instance_id)


def settled(db, instance_id, vm_state):
    wait_for(lambda: (row(db, instance_id).task_state is None
                      and row(db, instance_id).vm_state == vm_state), DEADLINE,
             what="VM %s %s" % (instance_id, vm_state))
    return row(db, instance_id)


@pytest.fixture
def stack(conf, db, tmp_path):
    conf.set_override("move_step_timeout", 5, group="conductor")
    st = Stack(conf, db, tmp_path)
    yield st
    st.stop()


def test_resize_up_then_confirm(stack, db, tmp_path):
    vm = stack.boot(tmp_path)
    migration_uuid = stack.api.resize(CTXT, vm, "big")
    assert stack.usage() == (2, 256)  # the quota counts the new flavor at once
    inst = settled(db, vm, states.RESIZED)
    assert (inst.host, inst.flavor_id, inst.vcpus, inst.memory_mb, inst.root_gb) == (
        "h2", "big", 2, 256, 2)
    assert states.status(inst.vm_state, inst.task_state) == "VERIFY_RESIZE"
    migration = stack.migration(vm)
    assert (migration.uuid, migration.status, migration.migration_type, migration.source_host,
            migration.dest_host, migration.old_flavor_id, migration.new_flavor_id) == (
        migration_uuid, "finished", "resize", "h1", "h2", "small", "big")
    assert migration.request_id == CTXT.request_id
    # Both ends held until confirm: the VM on h2 (new), its migration on h1 (old).
    assert stack.held(vm) == {("h2", 2, 256, 2)}
    assert stack.held(migration_uuid) == {("h1", 1, 128, 1)}
    assert stack.domains("h2") == {vm: states.RUNNING}
    assert stack.domains("h1") == {vm: states.SHUTDOWN}  # kept for a revert

    stack.api.confirm_resize(CTXT, vm)
    inst = settled(db, vm, states.ACTIVE)
    assert inst.host == "h2" and stack.migration(vm).status == "confirmed"
    assert stack.held(migration_uuid) == set() and stack.held(vm) == {("h2", 2, 256, 2)}
    assert stack.domains("h1") == {}
    assert stack.usage() == (2, 256)
    with db.transaction() as s:
        node = {n.host: n for _svc, n in db_api.compute_hosts(s)}
    assert (node["h1"].vcpus_used, node["h2"].vcpus_used) == (0, 2)


def test_resize_then_revert(stack, db, tmp_path):
    vm = stack.boot(tmp_path)
    migration_uuid = stack.api.resize(CTXT, vm, "big")
    settled(db, vm, states.RESIZED)
    stack.api.revert_resize(CTXT, vm)
    inst = settled(db, vm, states.ACTIVE)
    assert (inst.host, inst.flavor_id, inst.vcpus, inst.memory_mb, inst.root_gb) == (
        "h1", "small", 1, 128, 1)
    assert stack.migration(vm).status == "reverted"
    assert stack.held(vm) == {("h1", 1, 128, 1)} and stack.held(migration_uuid) == set()
    assert stack.domains("h1") == {vm: states.RUNNING} and stack.domains("h2") == {}
    assert stack.usage() == (1, 128)


def test_cold_migrate_to_a_host_and_a_stopped_vm_stays_stopped(stack, db, tmp_path):
    vm = stack.boot(tmp_path)
    stack.hosts["h1"].driver.power_off(vm)
    with db.transaction() as s:
        db_api.instance_update_if(s, vm, {"vm_state": states.STOPPED,
                                          "power_state": states.SHUTDOWN})
    with pytest.raises(exception.Invalid, match="on host h1 already"):
        stack.api.migrate(ADMIN, vm, host="h1")
    with pytest.raises(exception.Invalid, match="no compute host"):
        stack.api.migrate(ADMIN, vm, host="nowhere")
    stack.api.migrate(ADMIN, vm, host="h2")
    inst = settled(db, vm, states.RESIZED)
    assert inst.host == "h2" and inst.flavor_id == "small"
    assert stack.domains("h2") == {vm: states.SHUTDOWN}
    assert stack.migration(vm).migration_type == "migration"
    stack.api.confirm_resize(CTXT, vm)
    inst = settled(db, vm, states.STOPPED)
    assert inst.host == "h2" and stack.usage() == (1, 128)


def test_the_guards(stack, db, tmp_path):
    vm = stack.boot(tmp_path)
    with pytest.raises(exception.Invalid, match="already has flavor small"):
        stack.api.resize(CTXT, vm, "small")
    with pytest.raises(exception.Invalid, match="disk never shrinks"):
        stack.api.resize(CTXT, vm, "tiny-disk")
    with pytest.raises(exception.Conflict, match="cannot confirm resize VM vm while it is "
                       "ACTIVE"):
        stack.api.confirm_resize(CTXT, vm)
    with pytest.raises(exception.Conflict, match="cannot revert resize"):
        stack.api.revert_resize(CTXT, vm)
    with db.transaction() as s:
        db_api.instance_update_if(s, vm, {"task_state": states.REBOOTING})
    with pytest.raises(exception.Conflict, match="while task rebooting is in progress"):
        stack.api.resize(CTXT, vm, "big")
    assert stack.usage() == (1, 128)


def test_quota_is_checked_on_a_resize_up(stack, db, tmp_path):
    vm = stack.boot(tmp_path)
    with db.transaction() as s:
        auth.quota_set(s, "p", {"cores": 1})
    with pytest.raises(exception.QuotaExceeded):
        stack.api.resize(CTXT, vm, "big")
    inst = row(db, vm)
    assert (inst.task_state, inst.flavor_id) == (None, "small")
    assert stack.usage() == (1, 128)
    with db.transaction() as s:
        assert vm_migrations.listing(s, instance_id=vm) == []


def test_no_room_anywhere_leaves_the_vm_active_on_its_host(stack, db, tmp_path):
    vm = stack.boot(tmp_path)
    with db.transaction() as s:
        db_flavors.create(s, "huge", 2, 64 * 1024, 2, flavor_id="huge")
        auth.quota_set(s, "p", {"ram": -1})
    migration_uuid = stack.api.resize(CTXT, vm, "huge")
    wait_for(lambda: stack.migration(vm).status == "error", DEADLINE, what="the move's end")
    inst = settled(db, vm, states.ACTIVE)
    assert (inst.host, inst.flavor_id, inst.memory_mb) == ("h1", "small", 128)
    assert stack.held(vm) == {("h1", 1, 128, 1)} and stack.held(migration_uuid) == set()
    assert stack.usage() == (1, 128)
    assert stack.domains("h1") == {vm: states.RUNNING}


def test_a_failing_destination_leaves_the_vm_active_on_the_source(conf, db, tmp_path):
    st = Stack(conf, db, tmp_path, drivers={"h2": FailingFinishDriver})
    try:
        vm = st.boot(tmp_path)
        migration_uuid = st.api.resize(CTXT, vm, "big")
        wait_for(lambda: st.migration(vm).status == "error", DEADLINE, what="the move's end")
        inst = settled(db, vm, states.ACTIVE)
        assert (inst.host, inst.flavor_id, inst.power_state) == ("h1", "small", "running")
        assert st.held(vm) == {("h1", 1, 128, 1)} and st.held(migration_uuid) == set()
        assert st.domains("h1") == {vm: states.RUNNING} and st.domains("h2") == {}
        assert st.usage() == (1, 128)
    finally:
        st.stop()


def test_a_destination_that_never_answers_rolls_the_move_back(conf, db, tmp_path):
    conf.set_override("move_step_timeout", 2, group="conductor")
    st = Stack(conf, db, tmp_path)
    try:
        vm = st.boot(tmp_path)
        st.servers[-1].stop()  # h2's compute is gone (its heartbeat not yet old)
        st.servers[-1].wait(timeout=5)
        st.api.migrate(ADMIN, vm)
        wait_for(lambda: st.migration(vm).status == "error", DEADLINE, what="the move's end")
        inst = settled(db, vm, states.ACTIVE)
        assert inst.host == "h1" and st.held(vm) == {("h1", 1, 128, 1)}
        assert st.domains("h1") == {vm: states.RUNNING} and st.domains("h2") == {}
    finally:
        st.servers.pop()
        st.stop()


def test_the_auto_confirm(stack, db, tmp_path):
    vm = stack.boot(tmp_path)
    stack.api.resize(CTXT, vm, "big")
    settled(db, vm, states.RESIZED)
    assert stack.task.confirm_expired() == 0  # window 0: never
    stack.conf.set_override("resize_confirm_window", 1, group="compute")
    with db.transaction() as s:  # finished long enough ago
        s.execute(vm_migrations._MIGRATIONS.update().values(
            updated_at=db_api.utcnow() - __import__("datetime").timedelta(seconds=5)))
    assert stack.task.confirm_expired() == 1
    inst = settled(db, vm, states.ACTIVE)
    assert inst.host == "h2" and stack.migration(vm).status == "confirmed"


def test_a_resize_stays_on_its_host_only_when_allowed(stack, db, tmp_path):
    vm = stack.boot(tmp_path)
    with db.transaction() as s:  # h2 disabled: the source is the only host left
        for svc in db_api.service_list(s):
            if svc.host == "h2":
                svc.disabled = True
    stack.api.resize(CTXT, vm, "big")
    wait_for(lambda: stack.migration(vm).status == "error", DEADLINE, what="no valid host")
    assert settled(db, vm, states.ACTIVE).flavor_id == "small"

    stack.conf.set_override("allow_resize_to_same_host", True, group="compute")
    migration_uuid = stack.api.resize(CTXT, vm, "big")
    inst = settled(db, vm, states.RESIZED)
    assert inst.host == "h1" and stack.migration(vm).dest_host == "h1"
    assert stack.held(vm) == {("h1", 2, 256, 2)}
    assert stack.held(migration_uuid) == {("h1", 1, 128, 1)}
    stack.api.revert_resize(CTXT, vm)
    inst = settled(db, vm, states.ACTIVE)
    assert (inst.host, inst.flavor_id) == ("h1", "small")
    assert stack.held(vm) == {("h1", 1, 128, 1)} and stack.held(migration_uuid) == set()
    assert stack.domains("h1") == {vm: states.RUNNING}


class FailingStartDriver(fake.FakeDriver):
    """A destination that defines the VM but cannot start it."""

    def finish_migration(self, instance, disk_info, base_image_path, power_on=True):
        super().finish_migration(instance, disk_info, base_image_path, power_on=False)
        if power_on:
            raise exception.MigrationError(instance=instance.id, reason="no CPU left")


def test_a_destination_that_cannot_start_it_keeps_the_one_copy(conf, db, tmp_path):
    st = Stack(conf, db, tmp_path, drivers={"h2": FailingStartDriver})
    try:
        vm = st.boot(tmp_path)
        st.api.resize(CTXT, vm, "big")
        inst = settled(db, vm, states.RESIZED)
        # Defined on h2 before it was started there: the source's copy stays off.
        with db.transaction() as s:
            assert "no CPU left" in db_api.instance_get(s, vm).fault
        assert (inst.host, inst.power_state) == ("h2", states.SHUTDOWN)
        assert st.domains("h2") == {vm: states.SHUTDOWN}
        assert st.domains("h1") == {vm: states.SHUTDOWN}
        st.api.revert_resize(CTXT, vm)  # back as it is now: stopped
        inst = settled(db, vm, states.STOPPED)
        assert inst.host == "h1" and st.domains("h1") == {vm: states.SHUTDOWN}
        assert st.domains("h2") == {}
    finally:
        st.stop()


def test_concurrent_resizes_never_over_commit_the_destination(stack, db, tmp_path):
    vms = [stack.boot(tmp_path, name="vm%d" % i) for i in range(3)]
    with db.transaction() as s:  # h2 has room for one "big" (256 MB) only: 300 x 1.5
        s.execute(sa.update(ComputeNode).where(ComputeNode.host == "h2")
                  .values(memory_mb=300))
    for vm in vms:
        stack.api.resize(CTXT, vm, "big")
    ends = {}
    for vm in vms:
        wait_for(lambda: stack.migration(vm).status in ("finished", "error"), DEADLINE,
                 what="the end of each move")
        ends[vm] = stack.migration(vm).status
    assert sorted(ends.values()) == ["error", "error", "finished"]
    with db.transaction() as s:
        node = {n.host: n for _svc, n in db_api.compute_hosts(s)}
    assert node["h2"].memory_mb_used == 256 <= 300 * 1.5
    for vm, status in ends.items():
        inst = row(db, vm)
        if status == "error":
            assert (inst.host, inst.vm_state, inst.flavor_id) == ("h1", "active", "small")
        else:
            assert (inst.host, inst.vm_state) == ("h2", states.RESIZED)
    assert stack.usage() == (4, 3 * 128 + 128)


class SourceDyingDriver(fake.FakeDriver):
    """A source whose compute goes away right after it set the disk aside."""
    on_aside = None

    def migrate_disk_and_power_off(self, instance_id, dest_host, timeout=0, cancel=None):
        disk_info = super().migrate_disk_and_power_off(instance_id, dest_host, timeout, cancel)
        if self.on_aside is not None:
            self.on_aside()
        return disk_info


def test_a_source_gone_after_the_copy_the_move_completes(conf, db, tmp_path):
    conf.set_override("move_step_timeout", 2, group="conductor")
    st = Stack(conf, db, tmp_path, drivers={"h1": SourceDyingDriver})
    h1_server = st.servers[2]  # h1's compute: conductor, scheduler, h1, h2
    try:
        vm = st.boot(tmp_path)
        st.hosts["h1"].driver.on_aside = lambda: threading.Thread(target=h1_server.stop).start()
        migration_uuid = st.api.resize(CTXT, vm, "big")
        inst = settled(db, vm, states.RESIZED)  # the destination needs nothing more of it
        assert inst.host == "h2" and st.domains("h2") == {vm: states.RUNNING}
        h1_server.wait(timeout=5)
        # A confirm while the source is away: not done, the VM awaits one again.
        st.api.confirm_resize(CTXT, vm)
        wait_for(lambda: row(db, vm).task_state is None, DEADLINE, what="the confirm's end")
        assert row(db, vm).vm_state == states.RESIZED
        assert st.migration(vm).status == "finished"
        assert st.held(migration_uuid) == {("h1", 1, 128, 1)}
        # The source back: the stale confirm is refused; a new one works.
        h1_back = rpc.RPCServer(st.transport, rpc.Target(
            compute_rpcapi.TOPIC, server="h1", version=compute_rpcapi.VERSION),
            [st.hosts["h1"]], workers=2)
        st.servers[2] = h1_back
        h1_back.start()
        st.api.confirm_resize(CTXT, vm)
        inst = settled(db, vm, states.ACTIVE)
        assert inst.host == "h2" and st.domains("h1") == {}
        assert st.held(migration_uuid) == set()
    finally:
        st.stop()


def test_a_delete_in_verify_resize_clears_both_hosts(stack, db, tmp_path):
    vm = stack.boot(tmp_path)
    migration_uuid = stack.api.resize(CTXT, vm, "big")
    settled(db, vm, states.RESIZED)
    service = VMService(db, None, compute_rpcapi.ComputeRPCAPI(stack.transport))
    service.delete(CTXT, vm)
    wait_for(lambda: row(db, vm) is None, DEADLINE, what="the VM deleted")
    wait_for(lambda: stack.domains("h1") == {} and stack.domains("h2") == {}, DEADLINE,
             what="no domain left on either host")
    assert stack.migration(vm).status == "confirmed"
    assert stack.held(vm) == set() and stack.held(migration_uuid) == set()
    assert stack.usage() == (0, 0)
