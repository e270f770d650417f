"""``mininova-api``: the REST API on waitress, a production WSGI server."""
import logging
import re
import sys

from common import config, log, rpc, service
from common.db.revocations import RevocationListener
from common.db.session import Database
from nova_api import healthcheck, http_server, workers
from nova_api.app import create_app
from nova_api.build_client import BuildClient
from nova_compute.rpcapi import ComputeRPCAPI
from nova_conductor.rpcapi import ConductorRPCAPI
from nova_scheduler.rpcapi import SchedulerRPCAPI

LOG = logging.getLogger(__name__)

IMAGE_UPLOAD = ("POST", "/v1/images")
# Blocks from this size get their own mapping, given back when freed: a long
# list's body (0.6 MB for 1000 VMs) then leaves no hole in the heap.
LARGE_BLOCK = 256 * 1024
GLANCE_UPLOAD = re.compile(r"^/image/v2/images/[^/]+/file/?\Z")


def build_app(conf):
    db = Database(config.database_url(conf), pool_size=conf.database.pool_size,
                  retry_seconds=conf.database.retry_seconds)
    transport = rpc.get_transport(config.transport_url(conf, "api"),
                                  **config.transport_options(conf))
    # The token cache needs revocations announced: PostgreSQL's NOTIFY.
    revocations = (RevocationListener(db).start()
                   if db.dialect == "postgresql" and conf.api.token_cache_seconds > 0 else None)
    levels = conf.upgrade_levels
    builds = BuildClient(ConductorRPCAPI(transport, version_cap=levels.conductor),
                         SchedulerRPCAPI(transport, version_cap=levels.scheduler))
    return create_app(conf, db, builds,
                      ComputeRPCAPI(transport, version_cap=levels.compute),
                      revocations=revocations, health=health_check(conf))


def health_check(conf):
    """/healthcheck's probes: the database, and the broker unless the
    transport is in-process (memory://, nothing to reach)."""
    api = conf.api
    probes = [healthcheck.DatabaseProbe(config.database_url(conf), api.healthcheck_timeout)]
    transport_url = config.transport_url(conf, "api")  # the API's own broker account
    if not transport_url.startswith("memory://"):
        probes.append(healthcheck.BrokerProbe(transport_url, api.healthcheck_timeout))
    return healthcheck.HealthCheck(probes, api.healthcheck_cache_seconds,
                                   api.healthcheck_timeout, api.healthcheck_disable_file)


def body_cap(api_conf):
    """What the server buffers of a request's body before the app sees it
    (past it: 413): an image upload (/v1's POST, Glance's PUT of a file) up
    to max_image_bytes; any other body is JSON, which the app refuses past
    max_body_bytes anyway."""
    def cap(method, path):
        if ((method, path.rstrip("/")) == IMAGE_UPLOAD
                or (method == "PUT" and GLANCE_UPLOAD.match(path))):
            return api_conf.max_image_bytes
        return api_conf.max_body_bytes
    return cap


def main(argv=None):
    service.tune_malloc(mmap_threshold=LARGE_BLOCK)
    conf = config.parse_args(sys.argv[1:] if argv is None else argv, prog="mininova-api")
    log.setup(conf, "mininova-api")
    rpc.protocol.set_sender("api", conf.host)  # "sender" in its messages
    if conf.api.workers > 1:
        serve_workers(conf)
        return
    server = http_server.create_server(build_app(conf), conf.api, body_cap(conf.api))
    service.tune_gc()  # the tail of GET /v1/vms was the garbage collector
    server.print_listen("Serving on http://{}:{}")
    server.run()


def serve_workers(conf):
    """[api] workers > 1: bind once, fork the workers (nova_api/workers.py);
    everything with threads or connections is made in each worker."""
    api = conf.api
    sock = workers.bind_socket(api.listen, api.port, api.backlog)
    host, port = sock.getsockname()[:2]
    print("Serving on http://%s:%d with %d workers" % (host, port, api.workers), flush=True)

    def serve(slot):
        server = http_server.create_server(build_app(conf), api, body_cap(api), sockets=[sock])
        service.tune_gc()
        LOG.info("API worker %d serving", slot)
        server.run()

    workers.Workers(api.workers, serve).run()
    sock.close()


if __name__ == "__main__":
    main()
