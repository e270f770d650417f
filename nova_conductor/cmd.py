"""``mininova-conductor``: consumes ``conductor`` (the builds the API casts,
the computes' reports and heartbeats) and watches over work in flight (the
watchdog)."""
import sys

from common import config, log, metrics, rpc, service
from common.db import api as db_api
from common.db.session import Database
from common.timeline import DbSink, Timeline
from nova_compute.rpcapi import ComputeRPCAPI
from nova_conductor import rpcapi
from nova_conductor.db_metrics import DatabaseCollector
from nova_conductor.manager import ConductorManager
from nova_conductor.move_recovery import MoveRecovery
from nova_conductor.tasks.build import BuildTask
from nova_conductor.tasks.evacuate import EvacuateTask
from nova_conductor.tasks.migrate import MigrateTask
from nova_conductor.tasks.live_migrate import LiveMigrationTask
from nova_conductor.watchdog import Watchdog
from nova_scheduler.rpcapi import SchedulerRPCAPI


def main(argv=None):
    service.tune_malloc()
    conf = config.parse_args(sys.argv[1:] if argv is None else argv, prog="mininova-conductor")
    log.setup(conf, "mininova-conductor")
    rpc.protocol.set_sender("conductor", conf.host)  # "sender" in its messages
    db = Database(config.database_url(conf), pool_size=conf.database.pool_size,
                  retry_seconds=conf.database.retry_seconds)
    transport = rpc.get_transport(config.transport_url(conf, "conductor"),
                                  **config.transport_options(conf))
    levels = conf.upgrade_levels
    compute = ComputeRPCAPI(transport, version_cap=levels.compute)
    # Uncapped: schedulers are upgraded together with the conductors
    # (nova_scheduler/rpcapi.py); [upgrade_levels] scheduler caps the APIs.
    build_task = BuildTask(db, SchedulerRPCAPI(transport), compute,
                           Timeline(DbSink(db), conf.host))
    evacuate_task = EvacuateTask(db, SchedulerRPCAPI(transport), compute,
                                 Timeline(DbSink(db), conf.host), conf.host)
    migrate_task = MigrateTask(db, SchedulerRPCAPI(transport), compute,
                               Timeline(DbSink(db), conf.host), conf)
    live_migration_task = LiveMigrationTask(db, SchedulerRPCAPI(transport), compute,
                                            Timeline(DbSink(db), conf.host))
    conductor = ConductorManager(db, build_task,
                                 max_attempts=conf.scheduler.max_attempts, host=conf.host,
                                 evacuate_task=evacuate_task, migrate_task=migrate_task,
                                 live_migration_task=live_migration_task)

    def heartbeat(ctxt):
        with db.transaction() as s:
            db_api.service_heartbeat(s, conf.host, "mininova-conductor", None)

    # Builds past [compute] build_timeout, deletes on a down host, lost requests.
    watchdog = Watchdog(db, rpcapi.ConductorRPCAPI(transport), compute, conf)
    svc = service.Service("mininova-conductor", servers=[
        rpc.RPCServer(transport, rpc.Target(rpcapi.TOPIC, version=rpcapi.VERSION),
                      [conductor], workers=conf.rpc_workers),
    ], tasks=[
        service.PeriodicTask("conductor-heartbeat", heartbeat, conf.compute.heartbeat_interval),
        service.PeriodicTask("watchdog", watchdog.run, conf.conductor.watchdog_interval,
                             delay=conf.conductor.watchdog_interval),
        # VMs in VERIFY_RESIZE past [compute] resize_confirm_window (0: never).
        # Moves whose conductor died mid-way (nova_conductor/move_recovery.py);
        # the first pass at start-up.
        service.PeriodicTask("move-recovery",
                             MoveRecovery(db, migrate_task, live_migration_task, conf).run,
                             conf.conductor.watchdog_interval),
        service.PeriodicTask("resize-auto-confirm", migrate_task.confirm_expired,
                             conf.conductor.watchdog_interval,
                             delay=conf.conductor.watchdog_interval),
    ], on_stop=transport.cleanup)
    metrics.REGISTRY.register(DatabaseCollector(db, conf.scheduler.service_down_time))
    metrics.serve(conf.conductor.metrics_host, conf.conductor.metrics_port, "mininova-conductor")
    service.tune_gc()
    svc.run()


if __name__ == "__main__":
    main()
