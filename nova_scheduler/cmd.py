"""``mininova-scheduler``: the scheduler and conductor endpoints of this daemon."""
import sys

from common import config, log, metrics, rpc, service
from common.db.session import Database
from nova_compute.rpcapi import ComputeAPI
from nova_scheduler import rpcapi
from nova_scheduler.conductor import ConductorManager
from nova_scheduler.db_metrics import DatabaseCollector
from nova_scheduler.manager import SchedulerManager
from nova_scheduler.watchdog import Watchdog


def main(argv=None):
    conf = config.parse_args(sys.argv[1:] if argv is None else argv, prog="mininova-scheduler")
    log.setup(conf, "mininova-scheduler")
    rpc.protocol.set_sender("scheduler", conf.host)  # "sender" in its messages
    db = Database(config.database_url(conf), pool_size=conf.database.pool_size)
    transport = rpc.get_transport(conf.transport_url)
    scheduler = SchedulerManager(db, ComputeAPI(transport), conf)
    conductor = ConductorManager(db, rpcapi.SchedulerAPI(transport),
                                 max_attempts=conf.scheduler.max_attempts, host=conf.host)
    workers = conf.rpc_workers
    svc = service.Service("mininova-scheduler", servers=[
        rpc.RPCServer(transport, rpc.Target(rpcapi.SCHEDULER_TOPIC, version=rpcapi.VERSION),
                      [scheduler], workers=workers),
        rpc.RPCServer(transport, rpc.Target(rpcapi.CONDUCTOR_TOPIC, version=rpcapi.VERSION),
                      [conductor], workers=workers),
    ], tasks=[service.PeriodicTask(
        "scheduler-heartbeat",
        lambda ctxt: conductor.service_heartbeat(ctxt, conf.host, "mininova-scheduler"),
        conf.compute.heartbeat_interval)], on_stop=transport.cleanup)
    # Builds past [compute] build_timeout, deletes on a down host, lost requests.
    watchdog = Watchdog(db, rpcapi.SchedulerAPI(transport), ComputeAPI(transport), conf)
    svc.tasks.append(service.PeriodicTask("watchdog", watchdog.run,
                                          conf.scheduler.watchdog_interval,
                                          delay=conf.scheduler.watchdog_interval))
    metrics.REGISTRY.register(DatabaseCollector(db, conf.scheduler.service_down_time))
    metrics.serve(conf.scheduler.metrics_host, conf.scheduler.metrics_port, "mininova-scheduler")
    service.tune_gc()
    svc.run()


if __name__ == "__main__":
    main()
