"""The VM state model, as in Nova: vm_state, task_state, power_state, and the
one mapping from them to the API's ``status``."""

# vm_state: where the VM is at rest.
BUILDING = "building"
ACTIVE = "active"
STOPPED = "stopped"
PAUSED = "paused"
SUSPENDED = "suspended"
ERROR = "error"
DELETED = "deleted"
RESIZED = "resized"  # a resize or cold migration awaits confirm or revert

# The vm_states of a VM at rest: built, not deleted, not in error. Its domain
# belongs on its host, and the hypervisor's power state is its truth.
RESTING = (ACTIVE, STOPPED, PAUSED, SUSPENDED)

# task_state: what is being done to it right now (None when idle).
SCHEDULING = "scheduling"
SPAWNING = "spawning"
POWERING_OFF = "powering-off"
POWERING_ON = "powering-on"
REBOOTING = "rebooting"
REBOOTING_HARD = "rebooting_hard"
PAUSING = "pausing"
UNPAUSING = "unpausing"
SUSPENDING = "suspending"
RESUMING = "resuming"
DELETING = "deleting"
REBUILDING = "rebuilding"
# Moves and snapshots (Nova's names).
IMAGE_SNAPSHOT = "image_snapshot"
IMAGE_BACKUP = "image_backup"          # a snapshot kept in a rotation of backups
RESIZE_PREP = "resize_prep"            # destination chosen, being prepared
RESIZE_MIGRATING = "resize_migrating"  # source powering off, disk set aside
RESIZE_FINISH = "resize_finish"        # destination defines and starts it
RESIZE_REVERTING = "resize_reverting"
RESIZE_CONFIRMING = "resize_confirming"
MIGRATING = "migrating"                # live migration in progress
REBUILD_SPAWNING = "rebuild_spawning"  # evacuation: rebuilt on another host

# power_state: what the hypervisor says.
RUNNING = "running"
PAUSED_POWER = "paused"
SHUTDOWN = "shutdown"
CRASHED = "crashed"
SUSPENDED_POWER = "suspended"
NOSTATE = "nostate"
POWER_STATES = (RUNNING, PAUSED_POWER, SHUTDOWN, CRASHED, SUSPENDED_POWER, NOSTATE)

_STATUS_BY_VM_STATE = {
    BUILDING: "BUILD",
    ACTIVE: "ACTIVE",
    STOPPED: "SHUTOFF",
    PAUSED: "PAUSED",
    SUSPENDED: "SUSPENDED",
    ERROR: "ERROR",
    DELETED: "DELETED",
    RESIZED: "VERIFY_RESIZE",
}

# A task in progress overrides the resting status where Nova's API does so.
_STATUS_BY_TASK = {
    DELETING: "DELETING",
    REBOOTING: "REBOOT",
    REBOOTING_HARD: "HARD_REBOOT",
    REBUILDING: "REBUILD",
    REBUILD_SPAWNING: "REBUILD",
    RESIZE_PREP: "RESIZE",
    RESIZE_MIGRATING: "RESIZE",
    RESIZE_FINISH: "RESIZE",
    RESIZE_REVERTING: "REVERT_RESIZE",
    MIGRATING: "MIGRATING",
}


def status(vm_state, task_state):
    """The API status of a VM (Nova's names)."""
    if task_state in _STATUS_BY_TASK:
        return _STATUS_BY_TASK[task_state]
    return _STATUS_BY_VM_STATE.get(vm_state, "UNKNOWN")


# Guards of user actions: from which vm_states each may start (only when no
# task is in progress), and the task it sets.
ACTION_GUARDS = {
    "stop": ((ACTIVE, PAUSED, SUSPENDED), POWERING_OFF),
    "start": ((STOPPED,), POWERING_ON),
    "reboot": ((ACTIVE,), REBOOTING),
    "reboot_hard": (RESTING, REBOOTING_HARD),
    "pause": ((ACTIVE,), PAUSING),
    "unpause": ((PAUSED,), UNPAUSING),
    "suspend": ((ACTIVE,), SUSPENDING),
    "resume": ((SUSPENDED,), RESUMING),
    "rebuild": ((ACTIVE, STOPPED, ERROR), REBUILDING),
    "snapshot": ((ACTIVE, STOPPED, PAUSED, SUSPENDED), IMAGE_SNAPSHOT),
    "backup": ((ACTIVE, STOPPED, PAUSED, SUSPENDED), IMAGE_BACKUP),
    "resize": ((ACTIVE, STOPPED), RESIZE_PREP),
    "migrate": ((ACTIVE, STOPPED), RESIZE_PREP),
    "confirm_resize": ((RESIZED,), RESIZE_CONFIRMING),
    "revert_resize": ((RESIZED,), RESIZE_REVERTING),
    # A paused guest moves paused and stays paused on the destination (Nova's
    # test_live_block_migration_paused).
    "live_migrate": ((ACTIVE, PAUSED), MIGRATING),
    "evacuate": ((ACTIVE, STOPPED, ERROR), REBUILDING),
}

# Where each task ends when it succeeds.
TASK_RESULT = {
    POWERING_OFF: STOPPED, POWERING_ON: ACTIVE, REBOOTING: ACTIVE, REBOOTING_HARD: ACTIVE,
    PAUSING: PAUSED, UNPAUSING: ACTIVE, SUSPENDING: SUSPENDED, RESUMING: ACTIVE,
    REBUILDING: ACTIVE,
}

def task_result(task_state, power_state):
    """The vm_state a VM rests in when ``task_state`` succeeded and the
    hypervisor shows ``power_state``: the task's end state, except that a
    rebuild keeps the power the VM had (a stopped VM is rebuilt stopped) and
    a snapshot leaves the VM as it found it."""
    if task_state in (REBUILDING, IMAGE_SNAPSHOT, IMAGE_BACKUP):
        return _VM_STATE_BY_POWER.get(power_state, ACTIVE)
    return TASK_RESULT[task_state]


def task_failure_state(task_state, vm_state, power_state):
    """The vm_state a VM takes when ``task_state`` failed and the hypervisor
    shows ``power_state``: what that power means for it, except that a
    rebuild that lost the domain (NOSTATE) leaves the VM in ERROR."""
    if task_state == REBUILDING and power_state == NOSTATE:
        return ERROR
    return vm_state_for_power(vm_state, power_state)


_VM_STATE_BY_POWER = {
    RUNNING: ACTIVE, SHUTDOWN: STOPPED, CRASHED: STOPPED, PAUSED_POWER: PAUSED,
    SUSPENDED_POWER: SUSPENDED,
}


def vm_state_for_power(vm_state, power_state):
    """The vm_state a resting VM takes when the hypervisor reports
    ``power_state`` (Nova's power-state sync, without its delays): a VM that
    stopped behind our back becomes SHUTOFF, one started outside ACTIVE.
    VMs that are building, in error or deleted keep their vm_state."""
    if vm_state not in RESTING:
        return vm_state
    return _VM_STATE_BY_POWER.get(power_state, vm_state)


# Moves (the ``migrations`` table): their types, and the statuses of a move
# that has ended (its hosts are no longer in transit).
MIGRATION_TYPES = ("resize", "migration", "live-migration", "evacuation")
# An evacuation is "done" once the VM runs on its destination: the move is
# over for every host's ownership, but its source (down) still has to destroy
# its stale copy and give back the source allocation its record holds, which
# makes it "completed".
MIGRATION_ENDED = frozenset({"confirmed", "reverted", "completed", "error", "failed",
                             "cancelled", "done"})
EVACUATION_DONE = "done"
