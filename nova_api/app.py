"""Flask application factory."""
import logging
import time

from flask import Flask, Response, g, request

from common import context, metrics
from nova_api import (auth, errors, evacuation, healthcheck, live_migrations, move_service,
                      vm_metadata, vm_service, vm_snapshots)
from nova_api import openstack
from nova_api.blueprints import (actions, flavors, images, migrations, openapi, quotas,
                                  server_groups, services, versions, vms)

LOG = logging.getLogger(__name__)


def quota_defaults(conf):
    return {r: getattr(conf.quota, r) for r in ("instances", "cores", "ram")}


def create_app(conf, db, build_client, compute_rpcapi, revocations=None, health=None):
    """``revocations``: a started RevocationListener on ``db``; without it,
    tokens are looked up in the DB on every request (nothing cached).
    ``health``: the HealthCheck behind /healthcheck (default: no probes,
    always OK; mininova-api gives it the database and the broker)."""
    app = Flask("mininova-api")
    app.config["MAX_BODY_BYTES"] = conf.api.max_body_bytes
    app.json.sort_keys = False
    app.extensions["mininova"] = {
        "conf": conf,
        "db": db,
        "vm_service": vm_service.VMService(db, build_client, compute_rpcapi,
                                           host=conf.host, quota_defaults=quota_defaults(conf),
                                           name_scope=conf.api.unique_vm_name_scope,
                                           idempotency_seconds=conf.api.idempotency_key_seconds),
        "vm_metadata": vm_metadata.VMMetadata(db, quota_defaults(conf)),
        "evacuations": evacuation.EvacuationService(db, build_client, conf,
                                                    host=conf.host),
        "snapshot_service": vm_snapshots.SnapshotService(db, compute_rpcapi, host=conf.host),
        "live_migrations": live_migrations.LiveMigrations(
            db, build_client, compute_rpcapi, host=conf.host,
            service_down_time=conf.scheduler.service_down_time),
        "move_service": move_service.MoveService(db, build_client, host=conf.host,
                                                 quota_defaults=quota_defaults(conf)),
    }
    health = health or healthcheck.HealthCheck([])
    app.extensions["mininova"]["health"] = health
    tokens = auth.TokenCache(db, conf.api.token_cache_seconds, revocations)
    errors.register(app)
    for bp in (versions.bp, vms.bp, actions.bp, flavors.bp, images.bp, services.bp,
               server_groups.bp, quotas.bp, openapi.bp, migrations.bp):
        app.register_blueprint(bp)
    openstack.register(app)  # /identity, /compute, /image beside /v1

    @app.before_request
    def _start():
        g.started = time.monotonic()
        # The context (and its request id) exists first, so that even an
        # error raised while identifying the caller is logged under it.
        g.context = context.RequestContext()
        g.ctx_token = context.set_current(g.context)
        auth.authenticate(request, g.context, tokens)

    @app.after_request
    def _finish(response):
        ctxt = context.get_current()
        if ctxt is not None:
            response.headers["X-Request-Id"] = ctxt.request_id
        started = g.get("started", time.monotonic())
        # A load balancer's health checks, every second: not worth a line each.
        LOG.log(logging.DEBUG if request.path == "/healthcheck" else logging.INFO,
                "%s %s -> %s in %.1f ms", request.method, request.path, response.status_code,
                (time.monotonic() - started) * 1000)
        metrics.api_request(request.method, request.url_rule, response.status_code, started)
        return response

    # Prometheus scrapes this without a token (see auth.PUBLIC): counters by
    # route template and outcome only, no ids, names or projects.
    @app.get("/metrics")
    def prometheus_metrics():
        body, content_type = metrics.render()
        return Response(body, content_type=content_type)

    # For load balancers, without a token (auth.PUBLIC), as oslo.middleware's:
    # 200 "OK", or 503 naming what this API cannot reach (nova_api/healthcheck.py).
    @app.route("/healthcheck", methods=["GET", "HEAD"])
    def health_check():
        reasons = health.reasons()
        if reasons:
            return Response("; ".join(reasons), status=503, content_type="text/plain")
        return Response("OK", content_type="text/plain")

    @app.teardown_request
    def _teardown(_exc):
        token = g.pop("ctx_token", None)
        if token is not None:
            context.reset_current(token)

    return app
