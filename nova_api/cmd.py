"""``mininova-api``: the REST API on waitress, a production WSGI server."""
import sys

import waitress

from common import config, log, rpc, service
from common.db.revocations import RevocationListener
from common.db.session import Database
from nova_api.app import create_app
from nova_compute.rpcapi import ComputeAPI
from nova_scheduler.rpcapi import SchedulerAPI


def build_app(conf):
    db = Database(config.database_url(conf), pool_size=conf.database.pool_size)
    transport = rpc.get_transport(conf.transport_url)
    # The token cache needs revocations announced: PostgreSQL's NOTIFY.
    revocations = (RevocationListener(db).start()
                   if db.dialect == "postgresql" and conf.api.token_cache_seconds > 0 else None)
    return create_app(conf, db, SchedulerAPI(transport), ComputeAPI(transport),
                      revocations=revocations)


def main(argv=None):
    conf = config.parse_args(sys.argv[1:] if argv is None else argv, prog="mininova-api")
    log.setup(conf, "mininova-api")
    rpc.protocol.set_sender("api", conf.host)  # "sender" in its messages
    app = build_app(conf)
    service.tune_gc()  # the tail of GET /v1/vms was the garbage collector
    waitress.serve(app, host=conf.api.listen, port=conf.api.port, threads=conf.api.threads,
                   ident="mininova", clear_untrusted_proxy_headers=True)


if __name__ == "__main__":
    main()
