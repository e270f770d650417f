"""Client of the scheduler daemon: placement requests on the ``scheduler`` topic.

Version history (a server at X.Y takes X.0 to X.Y; a client capped by
``[upgrade_levels] scheduler`` sends the older form of a message):

* 1.0 - schedule_instance
* 1.1 - schedule_instance takes ``action_id`` (the create's action row)
* 1.2 - select_destinations: placement only, called by the conductor's build
  task, which casts the build itself. schedule_instance stays for APIs older
  than the conductor's build_instances (conductor 1.4): the scheduler hands
  it to the conductor. Schedulers and conductors of a release are upgraded
  together (before the APIs; computes last), so the two talk uncapped.
* 1.3 - select_move_destination: the destination of a VM's move (an
  evacuation), its source allocation handed to the migration record
* 1.4 - select_move_destination takes ``allow_source`` (a resize that may stay
  on its host, [compute] allow_resize_to_same_host)
"""
from common import rpc

TOPIC = "scheduler"
VERSION = "1.4"


class SchedulerRPCAPI:
    def __init__(self, transport, timeout=30, version_cap=None):
        """``version_cap``: the newest version all schedulers take (None: no cap)."""
        self.client = rpc.RPCClient(transport, rpc.Target(TOPIC), timeout=timeout,
                                    version_cap=version_cap)

    def schedule_instance(self, ctxt, instance_id, action_id=None):
        """``action_id``: the id of the create's action, if the caller has it."""
        kwargs, version = {"instance_id": instance_id}, "1.0"
        if self.client.can_send_version("1.1"):
            kwargs["action_id"], version = action_id, "1.1"
        self.client.prepare(version=version).cast(ctxt, "schedule_instance", **kwargs)

    def select_destinations(self, ctxt, instance_id, action_id=None):
        """Claim a host for the VM: {"host", "instance", "image", "action_id"},
        or None when it no longer waits for one. Raises InstanceNotFound,
        ImageNotFound, NoValidHost (and MessagingTimeout)."""
        return self.client.prepare(version="1.2").call(
            ctxt, "select_destinations", instance_id=instance_id, action_id=action_id)

    def select_move_destination(self, ctxt, instance_id, migration_uuid, requested_host=None,
                                allow_source=False):
        """Claim a destination for the move ``migration_uuid`` of the VM: the
        host, or None when the move no longer waits for one. Raises
        InstanceNotFound, MigrationNotFound, NoValidHost (and MessagingTimeout).
        ``allow_source``: the source may be chosen (sent as 1.4 only then)."""
        kwargs, version = {}, "1.3"
        if allow_source:
            kwargs, version = {"allow_source": True}, "1.4"
        return self.client.prepare(version=version).call(
            ctxt, "select_move_destination", instance_id=instance_id,
            migration_uuid=migration_uuid, requested_host=requested_host, **kwargs)
