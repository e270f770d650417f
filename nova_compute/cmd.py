"""``mininova-compute``: one per hypervisor host, consuming ``compute.<host>``."""
import os
import sys

from common import config, context, log, metrics, rpc, service
from nova_compute import rpcapi
from nova_compute.events import PowerEventSync
from nova_compute.imagecache import HttpFetcher, ImageCache
from nova_compute.manager import ComputeManager
from nova_compute.virt import get_driver
from nova_conductor.rpcapi import ConductorRPCAPI


def main(argv=None):
    service.tune_malloc()
    conf = config.parse_args(sys.argv[1:] if argv is None else argv, prog="mininova-compute")
    log.setup(conf, "mininova-compute")
    rpc.protocol.set_sender("compute", conf.host)  # "sender" in its messages
    for path in (conf.compute.instances_path, conf.compute.image_cache_path):
        os.makedirs(path, exist_ok=True)
    transport = rpc.get_transport(config.transport_url(conf, "compute"),
                                  **config.transport_options(conf))
    events = PowerEventSync(conf.compute.stop_event_debounce)
    driver = get_driver(conf, lifecycle_callback=events.on_event)
    driver.init_host(conf.host)
    conductor = ConductorRPCAPI(transport, timeout=conf.rpc_response_timeout,
                                version_cap=conf.upgrade_levels.conductor)
    manager = ComputeManager(driver, conductor,
                             ImageCache(conf.compute.image_cache_path,
                                        fetcher=HttpFetcher(token=conf.compute.image_api_token)), conf)
    # Up before anything is retried: the builds init_host hands back to the
    # scheduler must find this host up, and it stays up however long
    # init_host takes (the heartbeats go on from here).
    admin = context.get_admin_context()
    # Before anything is reported: no heartbeat may count this host up (nor
    # a power sync run) while a copy of a VM evacuated away from it lives.
    manager.destroy_evacuated_instances(admin)
    manager.report_in(admin)
    heartbeat = service.PeriodicTask("heartbeat", manager.heartbeat,
                                     conf.compute.heartbeat_interval,
                                     delay=conf.compute.heartbeat_interval)
    heartbeat.start()
    manager.init_host(admin)
    events.start(manager.sync_after_event)
    svc = service.Service("mininova-compute", servers=[
        rpc.RPCServer(transport, rpc.Target(rpcapi.TOPIC, server=conf.host,
                                            version=rpcapi.VERSION),
                      [manager], workers=conf.compute.rpc_workers),
    ], tasks=[heartbeat,
              service.PeriodicTask("addresses", manager.addresses.poll,
                                   conf.compute.address_poll_interval),
              service.PeriodicTask("reconcile", manager.reconcile, conf.compute.sync_interval,
                                   delay=conf.compute.sync_interval)],
        on_stop=lambda: (events.stop(), driver.cleanup_host(), transport.cleanup()))
    # Leftovers of builds the scheduler's watchdog gave up while we were silent.
    svc.tasks.append(service.PeriodicTask("reap-failed-builds", manager.reap_failed_builds,
                                          conf.compute.sync_interval,
                                          delay=conf.compute.sync_interval))
    metrics.serve(conf.compute.metrics_host, conf.compute.metrics_port, "mininova-compute")
    svc.run()


if __name__ == "__main__":
    main()
