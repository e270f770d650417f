"""Client of the conductor daemons (topic ``conductor``): compute hosts report
state and heartbeats here and hold no database credentials, as in Nova.

Version history (a server at X.Y takes X.0 to X.Y; a client capped by
``[upgrade_levels] conductor`` sends the older form of a message):

* 1.0 - service_heartbeat, instance_get, instance_list_for_host,
  instance_set_address, instance_task_done, instance_task_failed,
  instance_power_sync, instance_vanished, instance_spawned,
  instance_failed_builds_for_host, instance_build_failed, instance_terminated,
  action_event, action_finish
* 1.1 - instance_spawned and instance_build_failed take ``action_id`` (the
  create's action row), so that nobody looks it up per report
* 1.2 - instance_build_interrupted (a host's restart cut a build short)
* 1.3 - fixed_ip_allocate (a VM's fixed IP allocated in the DB before spawn)
* 1.4 - build_instances: the API hands a create to the conductor's build task
  (select_destinations on the scheduler, then the build cast to the chosen
  compute host). Conductors and schedulers of a release are upgraded
  together, before the APIs (computes last): an API capped below 1.4 casts
  schedule_instance to the (older) schedulers instead, and an older API's
  schedule_instance reaching a newer scheduler is handed to the conductor.
* 1.5 - evacuate_instance (from the API), evacuation_done and
  evacuation_failed (the destination's reports), evacuations_to_clean and
  evacuation_source_cleaned (the source, back up, destroys its stale copies)
* 1.6 - migrate_server, confirm_resize, revert_resize: the API hands a resize
  or cold migration (and its confirm or revert) to the conductor's migrate
  task, which drives the compute hosts' steps
* 1.7 - live_migrate_instance (from the API), live_migration_progress (a
  cast), live_migration_succeeded and live_migration_failed (calls): a live
  migration, orchestrated by the conductor's live-migrate task, and the
  source host's reports of it
"""
from common import rpc

TOPIC = "conductor"
VERSION = "1.7"
# live_migration_succeeded waits for the destination to settle the domain.
POST_TIMEOUT = 150


class ConductorRPCAPI:
    def __init__(self, transport, timeout=30, version_cap=None):
        """``version_cap``: the newest version all conductors take (None: no cap)."""
        self.client = rpc.RPCClient(transport, rpc.Target(TOPIC), timeout=timeout,
                                    version_cap=version_cap)

    def _build_report(self, ctxt, method, action_id, **kwargs):
        """instance_spawned and instance_build_failed: ``action_id`` from 1.1 on."""
        version = "1.0"
        if self.client.can_send_version("1.1"):
            kwargs["action_id"], version = action_id, "1.1"
        return self.client.prepare(version=version).call(ctxt, method, **kwargs)

    @property
    def can_build_instances(self):
        """False while conductors older than 1.4 run: the API then casts
        schedule_instance to the scheduler, as the previous release did."""
        return self.client.can_send_version("1.4")

    def build_instances(self, ctxt, instance_id, action_id=None):
        """Place the VM and cast its build (a cast: the API answers 202 at
        once). ``action_id``: the create's action, which travels with the
        build to the compute and back."""
        self.client.prepare(version="1.4").cast(ctxt, "build_instances",
                                                 instance_id=instance_id, action_id=action_id)

    # Evacuation (1.5): a compute older than 1.5 never receives an evacuation.
    def evacuate_instance(self, ctxt, instance_id, migration_uuid, host=None):
        """Place the VM of a down host elsewhere and rebuild it there (a cast).
        Capped below 1.5: RPCVersionCapError, nothing sent."""
        self.client.prepare(version="1.5").cast(ctxt, "evacuate_instance",
                                                 instance_id=instance_id,
                                                 migration_uuid=migration_uuid, host=host)

    def evacuation_done(self, ctxt, instance_id, host, migration_uuid, power_state):
        return self.client.prepare(version="1.5").call(
            ctxt, "evacuation_done", instance_id=instance_id, host=host,
            migration_uuid=migration_uuid, power_state=power_state)

    def evacuation_failed(self, ctxt, instance_id, host, migration_uuid, reason):
        return self.client.prepare(version="1.5").call(
            ctxt, "evacuation_failed", instance_id=instance_id, host=host,
            migration_uuid=migration_uuid, reason=reason)

    def evacuations_to_clean(self, ctxt, host):
        """[{"uuid", "instance_id", "status", "host"}]; [] from a conductor
        older than 1.5 (it knows no evacuation)."""
        if not self.client.can_send_version("1.5"):
            return []
        return self.client.prepare(version="1.5").call(ctxt, "evacuations_to_clean",
                                                        host=host)

    def evacuation_source_cleaned(self, ctxt, migration_uuid, host):
        return self.client.prepare(version="1.5").call(
            ctxt, "evacuation_source_cleaned", migration_uuid=migration_uuid, host=host)
    def _move_cast(self, ctxt, method, **kwargs):
        """Under a cap below 1.6 (conductors not all upgraded):
        RPCVersionCapError, nothing sent."""
        self.client.prepare(version="1.6").cast(ctxt, method, **kwargs)

    def migrate_server(self, ctxt, instance_id, migration_uuid, target_host=None):
        """Run the resize or cold migration ``migration_uuid`` (a cast)."""
        self._move_cast(ctxt, "migrate_server", instance_id=instance_id,
                        migration_uuid=migration_uuid, target_host=target_host)

    def confirm_resize(self, ctxt, instance_id, migration_uuid):
        self._move_cast(ctxt, "confirm_resize", instance_id=instance_id,
                        migration_uuid=migration_uuid)

    def revert_resize(self, ctxt, instance_id, migration_uuid):
        self._move_cast(ctxt, "revert_resize", instance_id=instance_id,
                        migration_uuid=migration_uuid)
    # Live migration (1.7): under a cap below it, RPCVersionCapError, nothing sent.
    def live_migrate_instance(self, ctxt, instance_id, migration_uuid, host=None):
        """Start the VM's live migration ``migration_uuid`` (a cast)."""
        self.client.prepare(version="1.7").cast(
            ctxt, "live_migrate_instance", instance_id=instance_id,
            migration_uuid=migration_uuid, host=host)

    def live_migration_progress(self, ctxt, instance_id, migration_uuid, progress):
        """``progress``: the record's memory_*/disk_* byte counts (a cast)."""
        self.client.prepare(version="1.7").cast(
            ctxt, "live_migration_progress", instance_id=instance_id,
            migration_uuid=migration_uuid, progress=progress)

    def live_migration_succeeded(self, ctxt, instance_id, migration_uuid, host):
        return self.client.prepare(version="1.7", timeout=POST_TIMEOUT).call(
            ctxt, "live_migration_succeeded", instance_id=instance_id,
            migration_uuid=migration_uuid, host=host)

    def live_migration_failed(self, ctxt, instance_id, migration_uuid, host, reason,
                              aborted=False):
        return self.client.prepare(version="1.7").call(
            ctxt, "live_migration_failed", instance_id=instance_id,
            migration_uuid=migration_uuid, host=host, reason=reason, aborted=aborted)

    def service_heartbeat(self, ctxt, host, binary, resources, wait=False):
        """A cast; with ``wait`` a call, which returns once the heartbeat is
        committed (a host reporting in at start-up)."""
        send = self.client.call if wait else self.client.cast
        send(ctxt, "service_heartbeat", host=host, binary=binary, resources=resources)

    def instance_get(self, ctxt, instance_id):
        """The live VM as a dict, or None when it is gone."""
        return self.client.call(ctxt, "instance_get", instance_id=instance_id)

    def instance_list_for_host(self, ctxt, host):
        return self.client.call(ctxt, "instance_list_for_host", host=host)

    def instance_set_address(self, ctxt, instance_id, host, ip_address):
        self.client.call(ctxt, "instance_set_address", instance_id=instance_id, host=host,
                         ip_address=ip_address)

    def fixed_ip_allocate(self, ctxt, instance_id, host, network):
        """The VM's fixed IP in ``network`` (a FixedNetwork's dict), or None
        when it is no longer spawning on ``host``. Capped below 1.3 (an older
        conductor): None without asking, and the VM takes a DHCP lease."""
        if not self.client.can_send_version("1.3"):
            return None
        return self.client.prepare(version="1.3").call(
            ctxt, "fixed_ip_allocate", instance_id=instance_id, host=host, network=network)

    def instance_task_done(self, ctxt, instance_id, host, task_state, power_state):
        return self.client.call(ctxt, "instance_task_done", instance_id=instance_id, host=host,
                                task_state=task_state, power_state=power_state)

    def instance_task_failed(self, ctxt, instance_id, host, task_state, power_state, message):
        return self.client.call(ctxt, "instance_task_failed", instance_id=instance_id,
                                host=host, task_state=task_state, power_state=power_state,
                                message=message)

    def instance_power_sync(self, ctxt, instance_id, host, power_state):
        return self.client.call(ctxt, "instance_power_sync", instance_id=instance_id,
                                host=host, power_state=power_state)

    def instance_vanished(self, ctxt, instance_id, host):
        return self.client.call(ctxt, "instance_vanished", instance_id=instance_id, host=host)

    def instance_spawned(self, ctxt, instance_id, host, power_state, events=(), action_id=None):
        """``events``: the build's timed steps, recorded with the new state
        (in the action ``action_id`` when given). False when the VM was no
        longer spawning on ``host`` (given up by the watchdog, deleted, or a
        repeat of a report that made it)."""
        return self._build_report(ctxt, "instance_spawned", action_id,
                                  instance_id=instance_id, host=host,
                                  power_state=power_state, events=list(events))

    def instance_failed_builds_for_host(self, ctxt, host):
        """Ids of ``host``'s live VMs in ERROR that never ran."""
        return self.client.call(ctxt, "instance_failed_builds_for_host", host=host)

    def instance_build_failed(self, ctxt, instance_id, host, reason, events=(), action_id=None):
        self._build_report(ctxt, "instance_build_failed", action_id, instance_id=instance_id,
                           host=host, reason=reason, events=list(events))

    def instance_build_interrupted(self, ctxt, instance_id, host, reason):
        if not self.client.can_send_version("1.2"):
            # To a conductor older than 1.2: a failed build (the host is not retried).
            return self.instance_build_failed(ctxt, instance_id, host, reason)
        return self.client.prepare(version="1.2").call(
            ctxt, "instance_build_interrupted", instance_id=instance_id, host=host,
            reason=reason)

    def instance_terminated(self, ctxt, instance_id, host):
        self.client.call(ctxt, "instance_terminated", instance_id=instance_id, host=host)

    # Action timeline: casts, fire and forget (recording must never slow or
    # fail the real work); callers go through common.timeline.Timeline, which
    # also swallows a broker error.
    def action_event(self, ctxt, instance_id, event, host, start_time, finish_time, result,
                     details=None):
        """One step of the action ``ctxt.request_id``; times as ISO 8601 strings."""
        self.client.cast(ctxt, "action_event", instance_id=instance_id, event=event, host=host,
                         start_time=start_time, finish_time=finish_time, result=result,
                         details=details)

    def action_finish(self, ctxt, instance_id, result, message=None):
        self.client.cast(ctxt, "action_finish", instance_id=instance_id, result=result,
                         message=message)
