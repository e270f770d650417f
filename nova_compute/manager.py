"""Compute endpoint: the RPC face of this host's work, and where its
collaborators are put together.

Each RPC method delegates to one collaborator: the Builder (builds), the
Deleter, PowerTasks, the Rebuilder, the Snapshotter, the Resizer, the
LiveMigrator, the Reconciler (periodic and event-driven syncs), the
StartupSettler and the AuditResponder. They share, explicitly, the VM locks
(work on one VM is serialized), a CancelRegistry (a delete cuts a power
task's wait short) and a BuildTracker (event syncs wait for a build's end).
Handlers are idempotent (RPC is at-least-once)."""
import functools
import logging

from common import states
from common.rpc import policy
from common.timeline import Timeline
from nova_compute import ownership
from nova_compute.addresses import AddressWatcher
from nova_compute.audit_responder import AuditResponder
from nova_compute.builder import Builder
from nova_compute.deleter import Deleter
from nova_compute.evacuator import Evacuator
from nova_compute.fixed_ips import FixedIps
from nova_compute.inflight import BuildTracker, CancelRegistry
from common.locks import KeyedLocks
from nova_compute.live_migrator import LiveMigrator
from nova_compute.power_tasks import PowerTasks
from nova_compute.image_upload import ImageUploader
from nova_compute.rebuilder import Rebuilder
from nova_compute.reconciler import Reconciler
from nova_compute.resizer import Resizer
from nova_compute.retrying_conductor import RetryingConductor
from nova_compute.settler import StartupSettler
from nova_compute.snapshotter import Snapshotter

LOG = logging.getLogger(__name__)


class ComputeManager:
    # What other daemons may call over compute.<host>; everything else
    # (periodic tasks, start-up work) is this daemon's own business.
    RPC_METHODS = frozenset({
        "build_instance", "terminate_instance", "get_console_output",
        "stop_instance", "start_instance", "reboot_instance", "pause_instance",
        "unpause_instance", "suspend_instance", "resume_instance", "rebuild_instance",
        "snapshot_instance", "backup_instance", "audit_report", "audit_fix",
        "evacuate_instance", "prep_resize",
        "resize_instance", "finish_resize", "confirm_resize", "revert_resize",
        "finish_revert_resize", "pre_live_migration", "live_migration",
        "live_migration_abort", "post_live_migration_at_destination",
        "rollback_live_migration_at_destination"})
    # Who may call each (common.rpc.policy): a user's actions come from the
    # API (or the conductor acting on one), moves only from the conductor
    # that orchestrates them, the audit from mininova-manage. Never another
    # compute host.
    RPC_POLICY = {
        **dict.fromkeys(("terminate_instance", "get_console_output", "stop_instance",
                         "start_instance", "reboot_instance", "pause_instance",
                         "unpause_instance", "suspend_instance", "resume_instance",
                         "rebuild_instance", "snapshot_instance", "backup_instance",
                         "live_migration_abort"),
                        policy.allow("api", "conductor", user_request=True)),
        **dict.fromkeys(("build_instance", "evacuate_instance", "prep_resize",
                         "resize_instance", "finish_resize", "confirm_resize", "revert_resize",
                         "finish_revert_resize", "pre_live_migration", "live_migration",
                         "post_live_migration_at_destination",
                         "rollback_live_migration_at_destination"),
                        policy.allow("conductor", user_request=True)),
        **dict.fromkeys(("audit_report", "audit_fix"), policy.allow("manage")),
    }

    def __init__(self, driver, conductor_api, image_cache, conf, report_deadline=120.0,
                 report_delay=0.5, image_uploader=None):
        """``conductor_api``: the conductor client; reports through it are
        retried for ``report_deadline`` s while the conductor is away (see
        RetryingConductor). ``image_uploader``: where snapshots go (default:
        the API's image store at [compute] image_api_url)."""
        self.driver = driver
        self.conf = conf
        self.host = conf.host
        self._conductor_api = conductor_api
        self.conductor = RetryingConductor(conductor_api, report_deadline, report_delay)
        self.locks = KeyedLocks()
        self.timeline = Timeline(conductor_api, self.host)  # best effort: casts, no retry
        self.addresses = AddressWatcher(driver, self._report_address)
        cancels, builds = CancelRegistry(), BuildTracker()
        self.reconciler = Reconciler(driver, self.conductor, self.locks, builds, conf)
        self.fixed_ips = FixedIps(driver, self.conductor, self.host)
        self.builder = Builder(driver, self.conductor, image_cache, self.locks, self.timeline,
                               builds, self.reconciler, self.addresses, conf, self.fixed_ips)
        self.deleter = Deleter(driver, self.conductor, self.locks, self.timeline, cancels,
                               self.addresses, self.host, self.fixed_ips)
        self.power = PowerTasks(driver, self.conductor, self.locks, self.timeline, cancels,
                                conf)
        self.rebuilder = Rebuilder(driver, self.conductor, image_cache, self.power, conf)
        uploader = image_uploader or ImageUploader(conf.compute.image_api_url,
                                                   conf.compute.image_api_token,
                                                   conf.compute.image_upload_timeout)
        self.snapshotter = Snapshotter(driver, self.power, uploader, self.timeline, conf)
        self.resizer = Resizer(driver, self.conductor, image_cache, self.locks, self.timeline,
                               conf)
        self.live_migrator = LiveMigrator(driver, self.conductor, image_cache, self.locks, conf,
                                          cancels=cancels)
        self.settler = StartupSettler(driver, self.conductor, self.locks, self.deleter,
                                      self.power, conf)
        self.evacuator = Evacuator(driver, self.conductor, image_cache, self.locks,
                                   self.timeline, self.fixed_ips, conf)
        self.audit = AuditResponder(driver, conductor_api, image_cache, self.locks,
                                    self.addresses, conf)

    def init_host(self, ctxt):
        """At start: settle interrupted tasks, reconcile with the hypervisor,
        and pick up the VMs of this host that still await an IP."""
        self.settler.settle(ctxt)
        self.live_migrator.recover(ctxt)
        self.builder.reap_failed_builds(ctxt)
        self.reconciler.reconcile(ctxt)
        for inst in self.conductor.instance_list_for_host(ctxt, self.host):
            if (ownership.relation(inst, self.host) == ownership.OWNER
                    and inst["vm_state"] == states.ACTIVE and inst["mac_address"]
                    and not inst["ip_address"]):
                self.addresses.expect(inst["id"], inst["mac_address"])

    def destroy_evacuated_instances(self, ctxt):
        """At start, before this host reports anything (its first heartbeat,
        any power sync): destroy the copies of VMs evacuated away from it
        while it was down (Nova's _destroy_evacuated_instances)."""
        return self.evacuator.destroy_evacuated(ctxt)

    def _report_address(self, ctxt, instance_id, ip_address):
        self.conductor.instance_set_address(ctxt, instance_id, self.host, ip_address)

    # -- RPC endpoints ------------------------------------------------------

    def build_instance(self, ctxt, instance, image, action_id=None, placed=False):
        """``action_id`` (message 1.1): the create's action, sent back with
        the report so that the conductor does not look it up; ``placed``
        (message 1.8): ``instance`` is as the scheduler placed it (see
        Builder.build)."""
        self.builder.build(ctxt, instance, image, action_id, placed=placed)

    def terminate_instance(self, ctxt, instance_id):
        self.deleter.terminate(ctxt, instance_id)

    def get_console_output(self, ctxt, instance_id, lines):
        return self.driver.get_console_output(instance_id, lines)

    def stop_instance(self, ctxt, instance_id):
        self.power.stop(ctxt, instance_id)

    def start_instance(self, ctxt, instance_id):
        self.power.start(ctxt, instance_id)

    def reboot_instance(self, ctxt, instance_id, hard=False):
        self.power.reboot(ctxt, instance_id, hard=hard)

    def pause_instance(self, ctxt, instance_id):
        self.power.pause(ctxt, instance_id)

    def unpause_instance(self, ctxt, instance_id):
        self.power.unpause(ctxt, instance_id)

    def suspend_instance(self, ctxt, instance_id):
        self.power.suspend(ctxt, instance_id)

    def resume_instance(self, ctxt, instance_id):
        self.power.resume(ctxt, instance_id)

    def rebuild_instance(self, ctxt, instance_id, image):
        self.rebuilder.rebuild(ctxt, instance_id, image)

    def evacuate_instance(self, ctxt, instance_id, image, migration_uuid):
        """(message 1.3) Rebuild here, from ``image``, a VM evacuated from its
        down host."""
        self.evacuator.rebuild_here(ctxt, instance_id, image, migration_uuid)

    def backup_instance(self, ctxt, instance_id, image_id, rotate_out):
        """(message 1.7) A snapshot, then the older backups ``rotate_out`` deleted."""
        self.snapshotter.snapshot(ctxt, instance_id, image_id, rotate_out=rotate_out)

    def snapshot_instance(self, ctxt, instance_id, image_id):
        """(message 1.4) Capture the VM's disk as the data of image ``image_id``."""
        self.snapshotter.snapshot(ctxt, instance_id, image_id)

    # Resize and cold migration (message 1.5): calls of the conductor's task.
    def prep_resize(self, ctxt, instance_id, migration_uuid, image):
        self.resizer.prep_resize(ctxt, instance_id, migration_uuid, image)

    def resize_instance(self, ctxt, instance_id, migration_uuid):
        return self.resizer.resize_instance(ctxt, instance_id, migration_uuid)

    def finish_resize(self, ctxt, instance_id, migration_uuid, disk_info, image, flavor,
                      power_on):
        return self.resizer.finish_resize(ctxt, instance_id, migration_uuid, disk_info, image,
                                          flavor, power_on)

    def confirm_resize(self, ctxt, instance_id, migration_uuid):
        self.resizer.confirm_resize(ctxt, instance_id, migration_uuid)

    def revert_resize(self, ctxt, instance_id, migration_uuid):
        self.resizer.revert_resize(ctxt, instance_id, migration_uuid)

    def finish_revert_resize(self, ctxt, instance_id, migration_uuid, flavor, power_on):
        return self.resizer.finish_revert_resize(ctxt, instance_id, migration_uuid, flavor,
                                                 power_on)

    # Live migration (message 1.6): the conductor's live-migrate task.
    def pre_live_migration(self, ctxt, instance_id, migration_uuid, image):
        return self.live_migrator.pre_live_migration(ctxt, instance_id, migration_uuid, image)

    def live_migration(self, ctxt, instance_id, migration_uuid, dest_host, migrate_data):
        self.live_migrator.live_migration(ctxt, instance_id, migration_uuid, dest_host,
                                          migrate_data)

    def live_migration_abort(self, ctxt, instance_id, migration_uuid):
        self.live_migrator.live_migration_abort(ctxt, instance_id, migration_uuid)

    def post_live_migration_at_destination(self, ctxt, instance_id, migration_uuid):
        return self.live_migrator.post_live_migration_at_destination(ctxt, instance_id,
                                                                     migration_uuid)

    def rollback_live_migration_at_destination(self, ctxt, instance_id, migration_uuid):
        self.live_migrator.rollback_live_migration_at_destination(ctxt, instance_id,
                                                                  migration_uuid)

    def audit_report(self, ctxt):
        return self.audit.report()

    def audit_fix(self, ctxt, instance_ids):
        return self.audit.fix(ctxt, instance_ids)

    # -- this daemon's own work (not RPC) -------------------------------------

    def sync_power_state(self, ctxt, instance_id):
        """Read one VM's state and report it (the caller holds its lock or
        needs none)."""
        self.reconciler.sync_power_state(ctxt, instance_id)

    def sync_after_event(self, ctxt, instance_id, expected=None):
        """After a lifecycle event (PowerEventSync): an answer of
        nova_compute.events."""
        return self.reconciler.sync_after_event(ctxt, instance_id, expected)

    def reconcile(self, ctxt):
        """The periodic reconcile. First the copies of VMs evacuated away
        while this host was only cut off (its compute never restarted, so its
        start-up did not destroy them): they must not run beside the new ones."""
        self.evacuator.destroy_evacuated(ctxt)
        return self.reconciler.reconcile(ctxt)

    def settle_interrupted(self, ctxt):
        self.settler.settle(ctxt)

    def reap_failed_builds(self, ctxt):
        return self.builder.reap_failed_builds(ctxt)

    def report_in(self, ctxt):
        """At start, before anything is retried: a heartbeat, committed when
        this returns, so that the scheduler counts this host up again when
        the builds settle_interrupted hands back to it are placed (a host
        that was down for service_down_time would otherwise be filtered out:
        on a one-host cloud, the builds would end in ERROR)."""
        self.conductor.call(functools.partial(self.heartbeat, wait=True), ctxt)

    def heartbeat(self, ctxt, wait=False):
        res = self.driver.get_host_resources()
        comp = self.conf.compute
        resources = {
            "vcpus": res["vcpus"],
            "memory_mb": max(0, res["memory_mb"] - comp.reserved_host_memory_mb),
            "local_gb": max(0, res["local_gb"] - comp.reserved_host_disk_gb),
            "hypervisor_type": res.get("hypervisor_type"),
            "hypervisor_version": res.get("hypervisor_version"),
            "cpu_info": res.get("cpu_info"),
        }
        # Not retried here: the next beat is the retry (report_in retries its own).
        if wait:  # a call: returns once the conductor committed it
            self._conductor_api.service_heartbeat(ctxt, self.host, "mininova-compute",
                                                  resources, wait=True)
        else:
            self._conductor_api.service_heartbeat(ctxt, self.host, "mininova-compute",
                                                  resources)
