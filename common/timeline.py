"""Record the steps of a user action on a VM, from any daemon.

    timeline = Timeline(sink, host)
    with timeline.step(ctxt, instance_id, "disk cloned") as step:
        ...                      # timed; "success", or "error" + message and re-raised
        step.details = "10 GB"   # optional, may be set inside the block
    timeline.record(ctxt, instance_id, "accepted")          # an instantaneous event
    timeline.finish(ctxt, instance_id, "success")           # the action's outcome

The request id (``ctxt.request_id``) ties the steps of all daemons to one
action. The sink is the conductor client (``nova_conductor.rpcapi.ConductorRPCAPI``,
casts) on compute hosts, or ``DbSink(db)`` where there is a database (API,
scheduler). Recording is best effort: a failure to record is logged and
swallowed, it never breaks or fails the real work.
"""
import contextlib
import logging

from common import exception
from common.db import actions
from common.db.models import utcnow

LOG = logging.getLogger(__name__)

SUCCESS = actions.SUCCESS
ERROR = actions.ERROR


class DbSink:
    """Writes straight to the database, each record in its own transaction
    (never inside the caller's: a failed record must not roll back real work)."""

    def __init__(self, db):
        self.db = db

    def action_start(self, ctxt, instance_id, action, start_time=None):
        with self.db.transaction() as s:
            actions.action_start(s, instance_id, ctxt.request_id, action, ctxt.project_id,
                                 user_id=ctxt.user_id, start_time=start_time)

    def action_event(self, ctxt, instance_id, event, host, start_time, finish_time, result,
                     details=None):
        with self.db.transaction() as s:
            actions.event_record(s, instance_id, ctxt.request_id, event, host=host,
                                 start_time=start_time, finish_time=finish_time,
                                 result=result, details=details,
                                 project_id=ctxt.project_id, user_id=ctxt.user_id)

    def action_finish(self, ctxt, instance_id, result, message=None):
        with self.db.transaction() as s:
            actions.action_finish(s, instance_id, ctxt.request_id, result, message,
                                  project_id=ctxt.project_id, user_id=ctxt.user_id)


class EventBuffer:
    """A sink that keeps events instead of sending them, so that a whole
    build's steps travel with its one state report (a build then costs the
    conductor one transaction, not one per step)."""

    def __init__(self):
        self.events = []

    def action_event(self, ctxt, instance_id, event, host, start_time, finish_time, result,
                     details=None):
        self.events.append({"event": event, "host": host, "start_time": start_time,
                            "finish_time": finish_time, "result": result, "details": details})


class Step:
    """What the body of ``Timeline.step`` may adjust before the step is recorded."""

    def __init__(self, details=None):
        self.details = details


class Timeline:
    def __init__(self, sink, host):
        self.sink = sink
        self.host = host

    def _safely(self, what, method, *args):
        try:
            method(*args)
        except Exception as e:  # recording is best effort, by design
            LOG.warning("could not record %s: %s", what, exception.describe(e))

    def start_action(self, ctxt, instance_id, action):
        """Begin the action ``ctxt.request_id`` (API side; needs a sink with
        ``action_start``, i.e. ``DbSink``). Idempotent."""
        self._safely("start of action %r for VM %s" % (action, instance_id),
                     lambda: self.sink.action_start(ctxt, instance_id, action))

    def record(self, ctxt, instance_id, event, details=None, result=SUCCESS):
        """An instantaneous event (start == finish)."""
        now = actions.format_time(utcnow())
        self._safely("event %r of VM %s" % (event, instance_id), self.sink.action_event,
                     ctxt, instance_id, event, self.host, now, now, result, details)

    @contextlib.contextmanager
    def step(self, ctxt, instance_id, event, details=None):
        """Time the block; record "success", or "error" with the exception's
        message in details (and re-raise)."""
        step = Step(details)
        start = utcnow()
        try:
            yield step
        except Exception as e:
            message = exception.describe(e)
            self._record_step(ctxt, instance_id, event, start, ERROR,
                              "%s: %s" % (step.details, message) if step.details else message)
            raise
        self._record_step(ctxt, instance_id, event, start, SUCCESS, step.details)

    def _record_step(self, ctxt, instance_id, event, start, result, details):
        self._safely("event %r of VM %s" % (event, instance_id), self.sink.action_event,
                     ctxt, instance_id, event, self.host, actions.format_time(start),
                     actions.format_time(utcnow()), result, details)

    def finish(self, ctxt, instance_id, result, message=None):
        """The action's outcome: "success" or "error" (with a message)."""
        self._safely("finish of the action of VM %s" % instance_id, self.sink.action_finish,
                     ctxt, instance_id, result, message)
