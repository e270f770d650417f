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

# power_state: what the hypervisor says.
RUNNING = "running"
PAUSED_POWER = "paused"
SHUTDOWN = "shutdown"
CRASHED = "crashed"
SUSPENDED_POWER = "suspended"
NOSTATE = "nostate"

_STATUS_BY_VM_STATE = {
    BUILDING: "BUILD",
    ACTIVE: "ACTIVE",
    STOPPED: "SHUTOFF",
    PAUSED: "PAUSED",
    SUSPENDED: "SUSPENDED",
    ERROR: "ERROR",
    DELETED: "DELETED",
}

# A task in progress overrides the resting status where Nova's API does so.
_STATUS_BY_TASK = {
    DELETING: "DELETING",
    REBOOTING: "REBOOT",
    REBOOTING_HARD: "HARD_REBOOT",
}


def status(vm_state, task_state):
    """The API status of a VM (Nova's names)."""
    if task_state in _STATUS_BY_TASK:
        return _STATUS_BY_TASK[task_state]
    return _STATUS_BY_VM_STATE.get(vm_state, "UNKNOWN")
