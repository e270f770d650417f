"""Client of the compute daemons: one queue per host, ``compute.<host>``.

Version history (a server at X.Y takes X.0 to X.Y; a client capped by
``[upgrade_levels] compute`` sends the older form of a message):

* 1.0 - build_instance, terminate_instance, get_console_output, stop_instance,
  start_instance, reboot_instance, pause_instance, unpause_instance,
  suspend_instance, resume_instance, audit_report, audit_fix
* 1.1 - build_instance takes ``action_id`` (sent back with the build's report)
* 1.2 - rebuild_instance
* 1.3 - evacuate_instance (the destination of an evacuation rebuilds the VM)
* 1.4 - snapshot_instance
* 1.5 - prep_resize, resize_instance, finish_resize, confirm_resize,
  revert_resize, finish_revert_resize: the steps of a resize or cold
  migration, each a call of the conductor's migrate task with ``timeout``
* 1.6 - pre_live_migration, post_live_migration_at_destination (calls),
  live_migration, live_migration_abort, rollback_live_migration_at_destination
  (casts): the steps of a live migration, which the conductor orchestrates
* 1.7 - backup_instance (a snapshot kept in a rotation of backups)
* 1.8 - build_instance takes ``placed``: the instance is as the scheduler
  placed it just now, with ``payloads.GUEST_FIELDS``, so that on its first
  delivery the build skips its instance_get round trip to the conductor
"""
from common import payloads, rpc

TOPIC = "compute"
VERSION = "1.8"


class ComputeRPCAPI:
    def __init__(self, transport, timeout=30, version_cap=None):
        """``version_cap``: the newest version all compute hosts take (None: no cap)."""
        self.client = rpc.RPCClient(transport, rpc.Target(TOPIC), timeout=timeout,
                                    version_cap=version_cap)
        self._hosts = {}  # (host, version) -> prepared client: casts are per VM

    def _host_client(self, host, version="1.0"):
        client = self._hosts.get((host, version))
        if client is None:
            client = self._hosts[(host, version)] = self.client.prepare(server=host,
                                                                        version=version)
        return client

    def build_instance(self, ctxt, host, instance, image, action_id=None):
        """``action_id``: the create's action, for the build's report;
        ``instance``: with every one of ``payloads.GUEST_FIELDS`` when it is
        as the scheduler placed it just now (sent as 1.8 ``placed``)."""
        placed = all(k in instance for k in payloads.GUEST_FIELDS)
        kwargs, version = {"instance": instance, "image": image}, "1.0"
        if self.client.can_send_version("1.1"):
            kwargs["action_id"], version = action_id, "1.1"
        if placed and self.client.can_send_version("1.8"):
            kwargs["placed"], version = True, "1.8"
        elif placed:  # the older form: the compute reads them with instance_get
            kwargs["instance"] = {k: v for k, v in instance.items()
                                  if k not in payloads.GUEST_FIELDS}
        self._host_client(host, version).cast(ctxt, "build_instance", **kwargs)

    def terminate_instance(self, ctxt, host, instance_id):
        self._cast(ctxt, host, "terminate_instance", instance_id=instance_id)

    def _cast(self, ctxt, host, method, **kwargs):
        self._host_client(host).cast(ctxt, method, **kwargs)

    def stop_instance(self, ctxt, host, instance_id):
        self._cast(ctxt, host, "stop_instance", instance_id=instance_id)

    def start_instance(self, ctxt, host, instance_id):
        self._cast(ctxt, host, "start_instance", instance_id=instance_id)

    def reboot_instance(self, ctxt, host, instance_id, hard):
        self._cast(ctxt, host, "reboot_instance", instance_id=instance_id, hard=hard)

    def pause_instance(self, ctxt, host, instance_id):
        self._cast(ctxt, host, "pause_instance", instance_id=instance_id)

    def unpause_instance(self, ctxt, host, instance_id):
        self._cast(ctxt, host, "unpause_instance", instance_id=instance_id)

    def suspend_instance(self, ctxt, host, instance_id):
        self._cast(ctxt, host, "suspend_instance", instance_id=instance_id)

    def resume_instance(self, ctxt, host, instance_id):
        self._cast(ctxt, host, "resume_instance", instance_id=instance_id)

    def rebuild_instance(self, ctxt, host, instance_id, image):
        """Rebuild the VM from ``image`` (a ``payloads.image``); under a cap
        below 1.2 (hosts not all upgraded): RPCVersionCapError, nothing sent."""
        self._host_client(host, "1.2").cast(ctxt, "rebuild_instance",
                                            instance_id=instance_id, image=image)

    @property
    def can_evacuate(self):
        """False while compute hosts older than 1.3 run ([upgrade_levels] compute)."""
        return self.client.can_send_version("1.3")

    def evacuate_instance(self, ctxt, host, instance_id, image, migration_uuid):
        """Rebuild on ``host`` the VM evacuated by ``migration_uuid``; under
        a cap below 1.3: RPCVersionCapError, nothing sent."""
        self._host_client(host, "1.3").cast(ctxt, "evacuate_instance",
                                            instance_id=instance_id, image=image,
                                            migration_uuid=migration_uuid)

    def backup_instance(self, ctxt, host, instance_id, image_id, rotate_out):
        """As snapshot_instance, then, once the image is active, delete the
        older backups ``rotate_out`` (image ids) that the rotation drops;
        under a cap below 1.7: RPCVersionCapError, nothing sent."""
        self._host_client(host, "1.7").cast(ctxt, "backup_instance", instance_id=instance_id,
                                            image_id=image_id, rotate_out=list(rotate_out))

    def snapshot_instance(self, ctxt, host, instance_id, image_id):
        """Capture the VM's disk as the data of the queued image ``image_id``;
        under a cap below 1.4: RPCVersionCapError, nothing sent."""
        self._host_client(host, "1.4").cast(ctxt, "snapshot_instance",
                                            instance_id=instance_id, image_id=image_id)

    # Resize and cold migration: calls of the conductor's migrate task, which
    # waits for each step's end (``timeout``: how long a step may take).
    def _move_call(self, ctxt, host, method, timeout, **kwargs):
        return self.client.prepare(server=host, version="1.5", timeout=timeout).call(
            ctxt, method, **kwargs)

    def prep_resize(self, ctxt, host, instance_id, migration_uuid, image, timeout):
        self._move_call(ctxt, host, "prep_resize", timeout, instance_id=instance_id,
                        migration_uuid=migration_uuid, image=image)

    def resize_instance(self, ctxt, host, instance_id, migration_uuid, timeout):
        """The source's ``disk_info`` for finish_resize."""
        return self._move_call(ctxt, host, "resize_instance", timeout,
                               instance_id=instance_id, migration_uuid=migration_uuid)

    def finish_resize(self, ctxt, host, instance_id, migration_uuid, disk_info, image, flavor,
                      power_on, timeout):
        """The VM's power state on the destination after."""
        return self._move_call(ctxt, host, "finish_resize", timeout, instance_id=instance_id,
                               migration_uuid=migration_uuid, disk_info=disk_info,
                               image=image, flavor=flavor, power_on=power_on)

    def confirm_resize(self, ctxt, host, instance_id, migration_uuid, timeout):
        self._move_call(ctxt, host, "confirm_resize", timeout, instance_id=instance_id,
                        migration_uuid=migration_uuid)

    def revert_resize(self, ctxt, host, instance_id, migration_uuid, timeout):
        self._move_call(ctxt, host, "revert_resize", timeout, instance_id=instance_id,
                        migration_uuid=migration_uuid)

    def finish_revert_resize(self, ctxt, host, instance_id, migration_uuid, flavor, power_on,
                             timeout):
        """The VM's power state on the source after."""
        return self._move_call(ctxt, host, "finish_revert_resize", timeout,
                               instance_id=instance_id, migration_uuid=migration_uuid,
                               flavor=flavor, power_on=power_on)
    # Live migration (1.6), the conductor's live-migrate task: under a cap
    # below 1.6, RPCVersionCapError and nothing sent.
    def pre_live_migration(self, ctxt, host, instance_id, migration_uuid, image, timeout):
        """On the destination: its migrate_data for the source."""
        return self.client.prepare(server=host, version="1.6", timeout=timeout).call(
            ctxt, "pre_live_migration", instance_id=instance_id,
            migration_uuid=migration_uuid, image=image)

    def live_migration(self, ctxt, host, instance_id, migration_uuid, dest_host, migrate_data):
        """On the source, which reports the outcome to the conductor."""
        self._host_client(host, "1.6").cast(
            ctxt, "live_migration", instance_id=instance_id, migration_uuid=migration_uuid,
            dest_host=dest_host, migrate_data=migrate_data)

    def live_migration_abort(self, ctxt, host, instance_id, migration_uuid):
        self._host_client(host, "1.6").cast(ctxt, "live_migration_abort",
                                            instance_id=instance_id,
                                            migration_uuid=migration_uuid)

    def post_live_migration_at_destination(self, ctxt, host, instance_id, migration_uuid,
                                           timeout):
        """The VM's power state on the destination, now its host."""
        return self.client.prepare(server=host, version="1.6", timeout=timeout).call(
            ctxt, "post_live_migration_at_destination", instance_id=instance_id,
            migration_uuid=migration_uuid)

    def rollback_live_migration_at_destination(self, ctxt, host, instance_id, migration_uuid):
        self._host_client(host, "1.6").cast(
            ctxt, "rollback_live_migration_at_destination", instance_id=instance_id,
            migration_uuid=migration_uuid)

    def get_console_output(self, ctxt, host, instance_id, lines):
        return self.client.prepare(server=host, timeout=10).call(
            ctxt, "get_console_output", instance_id=instance_id, lines=lines)

    # mininova-manage audit: calls, answered by the host itself.
    def audit_report(self, ctxt, host, timeout=None):
        """{"host", "domains": [{id, power_state}], "dirs": [ids], "images": [ids]}."""
        return self.client.prepare(server=host, timeout=timeout).call(ctxt, "audit_report")

    def audit_fix(self, ctxt, host, instance_ids, timeout=None):
        """Destroy these orphans on ``host``: {id: "destroyed"|"skipped:..."|"failed:..."}."""
        return self.client.prepare(server=host, timeout=timeout).call(
            ctxt, "audit_fix", instance_ids=list(instance_ids))
