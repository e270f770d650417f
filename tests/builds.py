"""The build path of a stack, in one process: the conductor's BuildTask over a
real SchedulerManager, its builds cast to a recording compute client."""
from common.timeline import DbSink, Timeline
from nova_conductor.tasks.build import BuildTask
from nova_scheduler.manager import SchedulerManager
from tests.conftest import Recorder


class InProcessScheduler:
    """The conductor's scheduler client, answered at once by ``scheduler``."""

    def __init__(self, scheduler):
        self.scheduler = scheduler

    def select_destinations(self, ctxt, instance_id, action_id=None):
        return self.scheduler.select_destinations(ctxt, instance_id, action_id=action_id)


class Builds:
    """``build(ctxt, vm)`` runs what the API's build_instances cast starts:
    placement by ``scheduler``, the build cast recorded in ``compute_rpcapi``."""

    def __init__(self, db, conf, scheduler=None, compute_rpcapi=None):
        self.scheduler = scheduler or SchedulerManager(db, Recorder(), conf)
        self.compute_rpcapi = compute_rpcapi or Recorder()
        self.task = BuildTask(db, InProcessScheduler(self.scheduler), self.compute_rpcapi,
                              Timeline(DbSink(db), "conductor"))

    @property
    def host_cache(self):
        return self.scheduler.host_cache

    @host_cache.setter
    def host_cache(self, host_cache):
        self.scheduler.host_cache = host_cache

    def build(self, ctxt, instance_id, action_id=None):
        """The host the VM was built on, or None."""
        return self.task.build_instances(ctxt, instance_id, action_id=action_id)
