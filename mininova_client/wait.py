"""``--wait``: follow a VM until its create, delete or power action is over.

Polls ``GET /v1/vms/<id>`` and the action timeline
``GET /v1/vms/<id>/actions/<request_id>`` (whose last event is the step in
progress) with a short, growing interval and a deadline. Progress goes to
stderr: one updating line on a terminal, a plain line per change otherwise."""
import sys
import time

from mininova_client import WAIT_ERROR, WAIT_TIMEOUT, CLIError
from mininova_client.api import APIError, ConnectError, quote
from mininova_client.format import fault

# Where each action rests when it succeeded.
EXPECTED = {"create": "ACTIVE", "stop": "SHUTOFF", "start": "ACTIVE", "reboot": "ACTIVE",
            "unpause": "ACTIVE", "resume": "ACTIVE", "pause": "PAUSED",
            "suspend": "SUSPENDED", "delete": None, "evacuate": "ACTIVE",
            "resize": "VERIFY_RESIZE", "migrate": "VERIFY_RESIZE", "confirm_resize": "ACTIVE",
            "revert_resize": "ACTIVE", "rebuild": "ACTIVE"}
FIRST_INTERVAL = 0.2
MAX_INTERVAL = 2.0


class Progress:
    def __init__(self, label, stream=None, tty=None):
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.last = None
        self.started = time.monotonic()

    def elapsed(self):
        return time.monotonic() - self.started

    def update(self, status, task=None, step=None):
        text = "%s: %s" % (self.label, status)
        if task:
            text += " (%s)" % task
        if step:
            text += ", step: %s" % step
        if self.tty:  # one line, rewritten in place, elapsed time ticking
            self.stream.write("\r\x1b[K%s [%.0fs]" % (text, self.elapsed()))
            self.stream.flush()
        elif text != self.last:
            self.stream.write("[%6.1fs] %s\n" % (self.elapsed(), text))
            self.stream.flush()
        self.last = text

    def end(self):
        if self.tty and self.last is not None:
            self.stream.write("\n")
            self.stream.flush()


def _action(client, vm_id, request_id):
    """(action, name of its last event), or ({}, None) while not recorded
    (the timeline is best effort: it never fails the wait)."""
    if not request_id:
        return {}, None
    try:
        body = client.get("/v1/vms/%s/actions/%s" % (quote(vm_id), quote(request_id)))
    except (APIError, ConnectError):
        return {}, None
    action = (body or {}).get("action") or {}
    events = action.get("events") or []
    return action, (events[-1].get("event") if events else None)


def _suffix(request_id):
    return " (request %s)" % request_id if request_id else ""


def wait_vm(client, vm, goal, request_id=None, timeout=300.0, stream=None, tty=None,
            sleep=time.sleep, expected=None):
    """Wait for ``goal`` ("create", "delete", "evacuate" or a power action)
    on ``vm`` (its JSON) to end in ``expected`` (default: the goal's status
    in EXPECTED; an evacuated VM that was stopped ends SHUTOFF). Returns the final VM (None after a delete); raises ``CLIError``
    with exit code 3 when it ended in ERROR (or the action failed), 4 on
    timeout. An API that is briefly unreachable or answers 5xx (a restart)
    is retried until the deadline."""
    name, expected = vm["name"], expected or EXPECTED[goal]
    progress = Progress(name, stream, tty)
    deadline = time.monotonic() + timeout
    interval = FIRST_INTERVAL
    try:
        while True:
            try:
                vm = client.get("/v1/vms/%s" % quote(vm["id"]))["vm"]
                unavailable = None
            except APIError as e:
                if e.status == 404 and goal == "delete":
                    progress.update("deleted")
                    return None
                if e.status == 404:
                    raise CLIError("error: VM %s was deleted while waiting for it to be %s%s"
                                   % (name, expected, _suffix(request_id)), WAIT_ERROR) from None
                if e.status < 500:
                    raise
                unavailable = e
            except ConnectError as e:
                unavailable = e
            if unavailable is not None:
                progress.update("API unavailable, retrying (%s)"
                                % unavailable.message.replace("error: ", "", 1))
                if time.monotonic() >= deadline:
                    raise unavailable
            else:
                action, step = _action(client, vm["id"], request_id)
                status, task = vm["status"], vm.get("task_state")
                progress.update(status, task, step)
                _check_failed(goal, vm, action, request_id, expected)
                if goal != "delete" and task is None and status == expected:
                    return vm
                if time.monotonic() >= deadline:
                    raise CLIError("error: timed out after %g s waiting for VM %s to %s "
                                   "(now %s%s)%s" % (
                                       timeout, name, "be gone" if goal == "delete"
                                       else "be " + expected, status,
                                       ", task %s" % task if task else "", _suffix(request_id)),
                                   WAIT_TIMEOUT)
            sleep(max(0.0, min(interval, deadline - time.monotonic())))
            interval = min(interval * 1.5, MAX_INTERVAL)
    finally:
        progress.end()


def _check_failed(goal, vm, action, request_id, expected):
    """Raise (exit 3) once the wait cannot end well any more."""
    status, task = vm["status"], vm.get("task_state")
    reason = fault(vm) or action.get("message")
    if status == "ERROR" and (goal != "delete" or task is None):
        raise CLIError("error: VM %s went ERROR: %s%s" % (
            vm["name"], reason or "(no fault recorded)", _suffix(request_id)), WAIT_ERROR)
    if goal == "create":
        return
    # A power action (or a delete) is over once no task is in progress.
    if action.get("result") == "error" or (task is None and (
            goal == "delete" or status != expected)):
        if not reason:
            reason = ("it stopped, the VM is still there" if goal == "delete"
                      else "it ended %s, not %s" % (status, expected))
        raise CLIError("error: %s of VM %s failed: %s (now %s)%s" % (
            goal, vm["name"], reason, status, _suffix(request_id)), WAIT_ERROR)
