"""Where the API sends a create's build.

The conductor's build_instances (conductor RPC 1.4) places the VM and casts
its build. While conductors of the previous release run (``[upgrade_levels]
conductor`` below 1.4), so do its schedulers, which place and cast the build
themselves: the create goes to their schedule_instance instead. An
evacuation goes to the conductor only (1.5; RPCVersionCapError below)."""


class BuildClient:
    def __init__(self, conductor_rpcapi, scheduler_rpcapi):
        self.conductor_rpcapi = conductor_rpcapi
        self.scheduler_rpcapi = scheduler_rpcapi

    def build_instances(self, ctxt, instance_id, action_id=None):
        if self.conductor_rpcapi.can_build_instances:
            self.conductor_rpcapi.build_instances(ctxt, instance_id, action_id=action_id)
        else:
            self.scheduler_rpcapi.schedule_instance(ctxt, instance_id, action_id=action_id)

    def evacuate_instance(self, ctxt, instance_id, migration_uuid, host=None):
        self.conductor_rpcapi.evacuate_instance(ctxt, instance_id, migration_uuid, host)

    def live_migrate_instance(self, ctxt, instance_id, migration_uuid, host=None):
        self.conductor_rpcapi.live_migrate_instance(ctxt, instance_id, migration_uuid, host)

    # Resize and cold migration: the conductor's migrate task (conductor 1.6).
    def migrate_server(self, ctxt, instance_id, migration_uuid, target_host=None):
        self.conductor_rpcapi.migrate_server(ctxt, instance_id, migration_uuid, target_host)

    def confirm_resize(self, ctxt, instance_id, migration_uuid):
        self.conductor_rpcapi.confirm_resize(ctxt, instance_id, migration_uuid)

    def revert_resize(self, ctxt, instance_id, migration_uuid):
        self.conductor_rpcapi.revert_resize(ctxt, instance_id, migration_uuid)
