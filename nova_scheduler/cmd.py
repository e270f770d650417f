"""``mininova-scheduler``: the placement service, consuming ``scheduler``."""
import sys

from common import config, log, metrics, rpc, service
from common.db import api as db_api
from common.db.session import Database
from nova_conductor.rpcapi import ConductorRPCAPI
from nova_scheduler import rpcapi
from nova_scheduler.manager import SchedulerManager


def main(argv=None):
    service.tune_malloc()
    conf = config.parse_args(sys.argv[1:] if argv is None else argv, prog="mininova-scheduler")
    log.setup(conf, "mininova-scheduler")
    rpc.protocol.set_sender("scheduler", conf.host)  # "sender" in its messages
    db = Database(config.database_url(conf), pool_size=conf.database.pool_size,
                  retry_seconds=conf.database.retry_seconds)
    transport = rpc.get_transport(config.transport_url(conf, "scheduler"),
                                  **config.transport_options(conf))
    # Uncapped: conductors are upgraded together with the schedulers (see rpcapi.py).
    scheduler = SchedulerManager(db, ConductorRPCAPI(transport), conf)

    def heartbeat(ctxt):
        with db.transaction() as s:
            db_api.service_heartbeat(s, conf.host, "mininova-scheduler", None)

    svc = service.Service("mininova-scheduler", servers=[
        rpc.RPCServer(transport, rpc.Target(rpcapi.TOPIC, version=rpcapi.VERSION),
                      [scheduler], workers=conf.rpc_workers),
    ], tasks=[service.PeriodicTask("scheduler-heartbeat", heartbeat,
                                   conf.compute.heartbeat_interval)],
        on_stop=transport.cleanup)
    metrics.serve(conf.scheduler.metrics_host, conf.scheduler.metrics_port, "mininova-scheduler")
    service.tune_gc()
    svc.run()


if __name__ == "__main__":
    main()
