"""oslo.config options of mininova, grouped as in the config file.

Every daemon and ``mininova-manage`` parse the same options; ``list_opts`` is
the entry point for ``oslo-config-generator`` (namespace ``mininova``).
"""
import os
import socket

from oslo_config import cfg

CONF = cfg.CONF

default_opts = [
    cfg.StrOpt("host", default=socket.gethostname(), sample_default="<hostname>",
               help="Name of this host; compute listens on queue compute.<host>."),
    cfg.StrOpt("state_path", default="/var/lib/mininova",
               help="Top directory for mininova's state (embedded DB, image store)."),
    cfg.StrOpt("transport_url", default="rabbit://guest:guest@127.0.0.1:5672/", secret=True,
               help="Message bus: rabbit://user:pass@host:port/vhost, or memory:// (tests). "
                    "Several brokers of one RabbitMQ cluster: rabbit://user:pass@host1:port1,"
                    "user:pass@host2:port2/vhost; each connection goes to the first that "
                    "answers, starting with the last that did."),
    cfg.IntOpt("rpc_response_timeout", default=30, min=1,
               help="Seconds to wait for the reply of an RPC call."),
    cfg.IntOpt("rpc_workers", default=16, min=1,
               help="Threads that handle RPC messages concurrently in one daemon "
                    "(mininova-compute has its own: [compute] rpc_workers)."),
]

# Also on the command line of every daemon.
cli_opts = [
    cfg.StrOpt("log-file", dest="log_file", help="Log to this file instead of stderr."),
    cfg.BoolOpt("debug", default=False, help="Log at DEBUG level."),
]

api_opts = [
    cfg.HostAddressOpt("listen", default="127.0.0.1", help="Address the API binds to."),
    cfg.PortOpt("port", default=8774, help="Port the API listens on."),
    cfg.IntOpt("workers", default=1, min=1, max=64,
               help="API processes (as Nova's osapi_compute_workers). 1: one process "
                    "serves. More: a parent binds the port and forks that many "
                    "workers sharing it, each with its own threads, database and "
                    "broker connections; it restarts a worker that dies. /metrics "
                    "and /healthcheck answer for the worker that serves the request."),
    cfg.IntOpt("threads", default=16, min=1,
               help="WSGI worker threads: requests served at once. Connections are read "
                    "and written by one event loop, so idle or slow clients hold none."),
    cfg.IntOpt("connection_limit", default=1000, min=1,
               help="Open client connections the API accepts; past it new clients wait "
                    "in the listen backlog. The soft file-descriptor limit is raised "
                    "(up to the hard one) to 3 per connection plus 256; if the hard "
                    "limit is lower, fewer connections are accepted (logged)."),
    cfg.IntOpt("channel_timeout", default=60, min=1,
               help="Seconds a connection may stay silent (nothing received or sent, "
                    "e.g. idle between keep-alive requests) before the API closes it."),
    cfg.IntOpt("cleanup_interval", default=10, min=1,
               help="Seconds between two sweeps for connections past channel_timeout."),
    cfg.IntOpt("client_header_timeout", default=20, min=1,
               help="Seconds a client has, from the first byte of a request, to send "
                    "its request line and headers (against clients that dribble them "
                    "byte by byte to hold connections: slowloris)."),
    cfg.IntOpt("client_body_timeout", default=20, min=1,
               help="Seconds a client has to send a request body, plus one second per "
                    "client_body_min_rate bytes it has sent."),
    cfg.IntOpt("client_body_min_rate", default=500, min=0,
               help="Bytes per second that earn a request body one more second "
                    "(0: the body must arrive within client_body_timeout)."),
    cfg.IntOpt("backlog", default=1024, min=1,
               help="Connections the kernel queues for the API before it accepts them "
                    "(capped by net.core.somaxconn)."),
    cfg.IntOpt("recv_bytes", default=8192, min=512,
               help="Bytes read from a client connection per recv()."),
    cfg.IntOpt("max_body_bytes", default=1024 * 1024, min=1024,
               help="Largest JSON request body accepted; the server stops receiving "
                    "a larger one (any body but an image upload) there, with a 413."),
    cfg.IntOpt("max_image_bytes", default=20 * 1024 ** 3, min=1024,
               help="Largest image upload accepted by POST /v1/images and by Glance's "
                    "PUT /image/v2/images/<id>/file."),
    cfg.StrOpt("service_project", default="service",
               help="Name of the project whose users may download the data of every image, "
                    "private ones included, through GET /v1/images/<id>/file: the compute "
                    "hosts' [compute] image_api_token belongs to one of them. Anyone else "
                    "downloads only the images they may see."),
    cfg.IntOpt("max_limit", default=1000, min=1,
               help="Most items a list (GET /v1/vms) returns in one page, whatever "
                    "its ?limit= asks; a 'next' link leads to the rest (as Nova's "
                    "osapi_max_limit)."),
    cfg.URIOpt("public_endpoint", schemes=["http", "https"],
               sample_default="http://192.168.56.10:8774",
               help="Base URL clients reach the API at, e.g. http://192.168.56.10:8774 (a "
                    "path prefix is allowed). The OpenStack surfaces (/identity, /compute, "
                    "/image) build every link and the service catalog from it. Unset: "
                    "derived from each request's scheme and Host header, which is right "
                    "unless a proxy in front rewrites them."),
    cfg.FloatOpt("token_cache_seconds", default=10.0, min=0.0,
                 help="Seconds the API may keep a token's identity in memory instead of "
                      "reading it from the database on each request. Revocation takes effect "
                      "at once all the same: on PostgreSQL the API LISTENs for the NOTIFY "
                      "that every change to the tokens and users tables sends, uses the cache "
                      "only while that connection is up, and mininova-manage token revoke / "
                      "user delete return only once every API process has heard them. This "
                      "is the upper bound for an API that cannot hear (a network cut not yet "
                      "noticed); mininova-manage waits that long (+1 s) at most, and must "
                      "see the same value as the API. With SQLite nothing is cached. 0: no "
                      "cache."),
    cfg.FloatOpt("healthcheck_cache_seconds", default=1.0, min=0.0,
                 help="GET /healthcheck (for a load balancer) answers from its last verdict "
                      "for this long: the database and the broker are probed at most once "
                      "per period, however many balancers poll."),
    cfg.FloatOpt("healthcheck_timeout", default=2.0, min=0.1,
                 help="Seconds GET /healthcheck gives the database and the broker to answer "
                      "(a connect, SELECT 1, an AMQP channel opened) before it answers 503 "
                      "naming the one that did not."),
    cfg.StrOpt("healthcheck_disable_file", default="",
               help="While this file exists GET /healthcheck answers 503 \"disabled by "
                    "file\": the load balancer sends this API no new requests (drain it "
                    "before a restart). Empty: none."),
    cfg.IntOpt("idempotency_key_seconds", default=86400, min=60,
               help="How long the X-Idempotency-Key of a POST /v1/vms holds: the same key "
                    "from the same project within this time returns the VM the first "
                    "request created (202, same id) instead of creating another."),
    cfg.StrOpt("unique_vm_name_scope", default="project", choices=["project", "global", ""],
               help="Where a new VM's name must be unique among live VMs: 'project' (its "
                    "project's), 'global' (all projects'), or empty: nowhere, names may "
                    "repeat as in Nova (a /v1 lookup by a name several of the caller's VMs "
                    "carry then answers 409 with their ids). Enforced atomically by the "
                    "database; a VM keeps the scope it was created with."),
]

identity_opts = [
    cfg.IntOpt("token_expiration", default=3600, min=1,
               help="Seconds a token issued by POST /identity/v3/auth/tokens stays valid "
                    "(as Keystone's option of that name). A token re-scoped with the token "
                    "method keeps the expiry of the token it came from."),
    cfg.IntOpt("password_hash_cost", default=15, min=10, max=20,
               help="scrypt work factor of new password hashes: log2 of N (r=8, p=1); 15 "
                    "costs 32 MiB and about 0.1 s per hash. Each hash records its own "
                    "parameters, so changing this affects only passwords set afterwards. "
                    "Values below 14 are for tests."),
]

database_opts = [
    cfg.StrOpt("connection", secret=True,
               help="SQLAlchemy URL. Default: a SQLite file in state_path "
                    "(for trying things; use PostgreSQL for real)."),
    cfg.IntOpt("pool_size", default=10, min=1, help="Connections kept per process."),
    cfg.FloatOpt("retry_seconds", default=3.0, min=0.0,
                 help="How long a transaction waits for a database that went away (a "
                      "restart, a failover) before failing with 503 (API) or being "
                      "retried later (daemons): connecting again, and running again "
                      "a transaction that the lost connection left unapplied."),
]

scheduler_opts = [
    cfg.IntOpt("service_down_time", default=60, min=1,
               help="A compute host whose last heartbeat is older than this is down."),
    cfg.FloatOpt("cpu_allocation_ratio", default=16.0, min=0.0,
                 help="Virtual CPUs per physical CPU the scheduler may hand out."),
    cfg.FloatOpt("ram_allocation_ratio", default=1.5, min=0.0,
                 help="Virtual RAM per physical RAM the scheduler may hand out."),
    cfg.FloatOpt("disk_allocation_ratio", default=1.0, min=0.0,
                 help="Virtual disk per physical disk the scheduler may hand out."),
    cfg.FloatOpt("ram_weight_multiplier", default=1.0,
                 help="Weight of free RAM: positive spreads VMs over hosts, negative "
                      "packs them onto the fullest host that fits."),
    cfg.FloatOpt("cpu_weight_multiplier", default=0.0,
                 help="Weight of free vCPUs (positive spreads, negative packs)."),
    cfg.FloatOpt("disk_weight_multiplier", default=0.0,
                 help="Weight of free disk (positive spreads, negative packs)."),
    cfg.IntOpt("max_attempts", default=3, min=1,
               help="Hosts a build is tried on before the VM goes to ERROR."),
    cfg.HostAddressOpt("metrics_host", default="0.0.0.0",
                       help="Address of the Prometheus metrics endpoint (GET /metrics)."),
    cfg.PortOpt("metrics_port", default=9101,
                help="Port of the Prometheus metrics endpoint; 0 disables it."),
]

conductor_opts = [
    cfg.IntOpt("watchdog_interval", default=10, min=1, deprecated_group="scheduler",
               help="Seconds between two passes of the conductor's watchdog, which "
                    "moves VMs whose request went nowhere: builds past [compute] "
                    "build_timeout to ERROR, deletes on a down host to a local delete."),
    cfg.IntOpt("task_resend_after", default=120, min=1, deprecated_group="scheduler",
               help="Seconds after which the watchdog sends a request that made no "
                    "progress again (both are idempotent): build_instances for a VM "
                    "still 'scheduling', terminate_instance for a VM 'deleting' on a "
                    "live host (e.g. its message was lost to a broker outage)."),
    cfg.IntOpt("move_step_timeout", default=300, min=1,
               help="Seconds the conductor waits for one step of a resize or cold "
                    "migration on a compute host (prepare, power off and set the disk "
                    "aside, finish, confirm, revert) before it takes the host for "
                    "failed and rolls the move back."),
    cfg.HostAddressOpt("metrics_host", default="0.0.0.0",
                       help="Address of the Prometheus metrics endpoint (GET /metrics)."),
    cfg.PortOpt("metrics_port", default=9103,
                help="Port of the Prometheus metrics endpoint; 0 disables it."),
]

compute_opts = [
    cfg.StrOpt("instances_path", default="/var/lib/mininova/instances",
               help="Directory holding one sub-directory (overlay disk) per VM."),
    cfg.StrOpt("image_cache_path", default="/var/lib/mininova/_base",
               help="Directory of cached base images shared by the overlays."),
    cfg.IntOpt("heartbeat_interval", default=10, min=1,
               help="Seconds between two heartbeats of a compute service."),
    cfg.IntOpt("reserved_host_memory_mb", default=512, min=0,
               help="RAM kept for the host itself, not offered to VMs."),
    cfg.IntOpt("reserved_host_disk_gb", default=0, min=0,
               help="Disk kept for the host itself, not offered to VMs."),
    cfg.StrOpt("compute_driver", default="libvirt",
               choices=["libvirt", "fake", "fake-libvirt", "fake-failing"],
               help="libvirt: real guests; fake: an in-memory hypervisor, no libvirt "
                    "at all (cheap: many simulated hosts on one machine); fake-libvirt: "
                    "the libvirt driver on libvirt's test driver (no guests, real domain "
                    "XML; [libvirt] connection_uri test:///<node XML> sets the host's "
                    "size); fake-failing: fake-libvirt with every spawn failing (for "
                    "testing reschedules)."),
    cfg.IntOpt("spawn_timeout", default=60, min=1,
               help="Seconds a started domain may take to report RUNNING."),
    cfg.IntOpt("rpc_workers", default=32, min=1,
               help="Threads of mininova-compute that handle RPC messages at once "
                    "(in place of [DEFAULT] rpc_workers): a build holds one for seconds, "
                    "so a burst of N builds on one host runs side by side only with N "
                    "workers."),
    cfg.StrOpt("network_name", default="mininova",
               help="libvirt network each VM's NIC joins (NAT with DHCP); empty: no NIC."),
    cfg.StrOpt("image_api_url", default="http://127.0.0.1:8774",
               help="Where compute downloads images it lacks: GET <url>/v1/images/<id>/file."),
    cfg.StrOpt("image_api_token", secret=True,
               help="The X-Auth-Token compute sends with those downloads, and with the "
                    "uploads of snapshots (PUT <url>/image/v2/images/<id>/file)."),
    cfg.StrOpt("snapshots_path", default="",
               help="Directory of the temporary flattened disks of snapshots being "
                    "uploaded (removed once uploaded or failed). Empty: 'snapshots' "
                    "beside instances_path."),
    cfg.IntOpt("image_upload_timeout", default=300, min=1,
               help="Seconds a snapshot's upload to the image store may wait on one "
                    "socket operation."),
    cfg.IntOpt("shutdown_timeout", default=60, min=0,
               help="Seconds a guest gets to power off after an ACPI request before "
                    "it is forced off (soft stop and soft reboot)."),
    cfg.FloatOpt("stop_event_debounce", default=0.3, min=0.0,
                 help="A stop event's state is read back at once (after any task of this "
                      "host on the VM); when the domain is not yet stopped (a reboot going "
                      "on), it is read again after this many seconds."),
    cfg.IntOpt("sync_interval", default=30, min=1,
               help="Seconds between two reconciliations of the DB with the hypervisor."),
    cfg.BoolOpt("reap_orphans", default=False,
                help="Destroy domains with this host's metadata but no live VM row."),
    cfg.FloatOpt("address_poll_interval", default=1.0, min=0.1,
                 help="Seconds between two looks at DHCP leases while a VM awaits its IP."),
    cfg.IntOpt("build_timeout", default=300, min=1,
               help="Seconds a VM may stay building (scheduling or spawning, counted "
                    "from its last state change) before the scheduler's watchdog puts it "
                    "in ERROR with a fault naming the host, and frees its allocations. A late "
                    "'spawned' report from that host then loses, and the host destroys "
                    "what it built."),
    cfg.BoolOpt("allow_resize_to_same_host", default=False,
                help="A resize may keep the VM on its host (when the scheduler picks "
                     "it); otherwise the source is excluded. A cold migration always "
                     "leaves its host."),
    cfg.IntOpt("resize_confirm_window", default=0, min=0,
               help="Seconds after which a resized or migrated VM awaiting confirmation "
                    "(VERIFY_RESIZE) is confirmed automatically by the conductor; 0: "
                    "never."),
    cfg.HostAddressOpt("metrics_host", default="0.0.0.0",
                       help="Address of the Prometheus metrics endpoint (GET /metrics)."),
    cfg.PortOpt("metrics_port", default=9102,
                help="Port of the Prometheus metrics endpoint; 0 disables it."),
]

libvirt_opts = [
    cfg.StrOpt("connection_uri", default="qemu:///system",
               help="libvirt URI of this host's hypervisor."),
    cfg.IntOpt("connection_pool_size", default=32, min=0,
               help="libvirt connections lent to builds and power actions besides the "
                    "main one (events, periodic tasks): libvirtd serves at most "
                    "max_client_requests (5) calls of one connection at a time, and "
                    "concurrent builds sharing one would queue there. 0: one connection."),
    cfg.StrOpt("virt_type", default="auto", choices=["auto", "kvm", "qemu"],
               help="Domain type; auto = kvm only where the CPU flags show vmx/svm."),
    cfg.StrOpt("live_migration_inbound_uri", default="",
               help="libvirt URI by which other hosts reach this host's libvirtd: "
                    "their libvirtd to live-migrate a VM here (peer to peer), their "
                    "compute to download the disk of a VM resized or cold-migrated away "
                    "from here; empty: qemu+tcp://<[DEFAULT] host>/system."),
]

quota_opts = [
    cfg.IntOpt("instances", default=10, min=-1,
               help="Default VMs per project (-1: unlimited); admins override per project."),
    cfg.IntOpt("cores", default=20, min=-1, help="Default vCPUs per project (-1: unlimited)."),
    cfg.IntOpt("ram", default=51200, min=-1, help="Default MB of RAM per project (-1: unlimited)."),
]

# Named as oslo.messaging's options of the same purpose.
oslo_messaging_rabbit_opts = [
    cfg.BoolOpt("rabbit_quorum_queue", default=False,
                help="Declare the service queues (scheduler, conductor, compute.<host>) and "
                     "the dead-letter queue mininova.dead as quorum queues, replicated over "
                     "the nodes of a RabbitMQ cluster, so that they survive the loss of a "
                     "minority of them. Reply queues stay classic and transient (they live "
                     "as long as the caller's connection). Every daemon of a vhost must have "
                     "the same value: RabbitMQ refuses to declare an existing queue with "
                     "another type (switching means emptying and deleting the queues first). "
                     "False: classic durable queues, for a one-node broker."),
    cfg.IntOpt("rabbit_quorum_delivery_limit", default=50, min=0,
               help="With rabbit_quorum_queue: deliveries of a message without an ack "
                    "(redeliveries after a daemon died holding it, delayed retries of a "
                    "cast) after which RabbitMQ dead-letters it to mininova.dead instead "
                    "of delivering it again, so a message that kills its daemon does not "
                    "loop forever (x-delivery-limit). Above the 20 delayed retries a server "
                    "gives a cast itself. 0: no limit."),
    cfg.FloatOpt("rabbit_retry_interval", default=0.5, min=0.01,
                 help="Seconds a consumer waits before its first reconnection attempt after "
                      "losing the broker; doubled at each failed attempt up to "
                      "rabbit_interval_max, each pause cut by up to half at random "
                      "(jitter) so that the clients of a broker node that died do not "
                      "come back in step."),
    cfg.FloatOpt("rabbit_interval_max", default=5.0, min=0.01,
                 help="Longest pause, in seconds, between two reconnection attempts."),
    cfg.FloatOpt("rabbit_publish_timeout", default=2.0, min=0.1,
                 help="Seconds a cast or call keeps retrying to publish (each attempt waits "
                      "for the broker's confirm) before it fails (the API then answers "
                      "503). On a cluster with quorum queues, more than the time the "
                      "surviving nodes take to see a node cut off by the network and elect "
                      "new queue leaders (net_ticktime, 7.5-12.5 s at net_ticktime = 10): "
                      "no publish is confirmed meanwhile. A node killed outright is seen at "
                      "once; its queues have new leaders in well under a second."),
]

# As Nova's: during a rolling upgrade, old and new daemons share the queues.
# Set each to the oldest version still running of that service, upgrade them
# all, then empty it again.
_VERSION_CAP = r"^(\d+\.\d+)?$"
upgrade_levels_opts = [
    cfg.StrOpt(service, default="", regex=_VERSION_CAP,
               help="Newest RPC message version sent to %s (\"X.Y\"), e.g. while some of "
                    "them still run an older release; older forms of a message are sent "
                    "instead (the version history is in %s/rpcapi.py). Empty: no cap, the "
                    "newest this release knows." % (binary, package))
    for service, binary, package in (
        ("scheduler", "mininova-scheduler", "nova_scheduler"),
        ("conductor", "mininova-conductor", "nova_conductor"),
        ("compute", "mininova-compute", "nova_compute"))
]

def _transport_url_opt(binary):
    return cfg.StrOpt("transport_url", default="", secret=True,
                      help="The message bus as %s reaches it: its own broker account "
                           "(README, Broker accounts). Empty: [DEFAULT] transport_url." % binary)


for _group, _binary in ((api_opts, "mininova-api"), (scheduler_opts, "mininova-scheduler"),
                        (conductor_opts, "mininova-conductor"),
                        (compute_opts, "mininova-compute")):
    _group.append(_transport_url_opt(_binary))

OPT_GROUPS = {
    "DEFAULT": default_opts,
    "api": api_opts,
    "identity": identity_opts,
    "database": database_opts,
    "scheduler": scheduler_opts,
    "conductor": conductor_opts,
    "compute": compute_opts,
    "libvirt": libvirt_opts,
    "quota": quota_opts,
    "upgrade_levels": upgrade_levels_opts,
    "oslo_messaging_rabbit": oslo_messaging_rabbit_opts,
}


def register_opts(conf):
    conf.register_cli_opts(cli_opts)
    for group, opts in OPT_GROUPS.items():
        conf.register_opts(opts, group=None if group == "DEFAULT" else group)


register_opts(CONF)


def list_opts():
    """For oslo-config-generator."""
    groups = [(None if g == "DEFAULT" else g, opts) for g, opts in OPT_GROUPS.items()]
    groups[0] = (None, cli_opts + default_opts)
    return groups


def parse_args(argv, conf=CONF, prog=None, default_config_files=None):
    """Parse the command line and config files into ``conf``.

    ``MININOVA_CONFIG`` names a config file when none is given on the command line.
    """
    if default_config_files is None:
        env = os.environ.get("MININOVA_CONFIG")
        candidates = [env] if env else ["/etc/mininova/mininova.conf"]
        default_config_files = [p for p in candidates if p and os.path.exists(p)]
    conf(argv, project="mininova", prog=prog,
         default_config_files=default_config_files)
    return conf


def transport_url(conf, daemon):
    """``[<daemon>] transport_url``, or ``[DEFAULT]``'s when that is empty."""
    return getattr(conf, daemon).transport_url or conf.transport_url


def transport_options(conf=CONF):
    """What rpc.get_transport(conf.transport_url, ...) takes from the config
    (ignored by the in-memory transport)."""
    group = conf.oslo_messaging_rabbit
    return {"quorum_queues": group.rabbit_quorum_queue,
            "delivery_limit": group.rabbit_quorum_delivery_limit,
            "reconnect_interval": group.rabbit_retry_interval,
            "reconnect_max": group.rabbit_interval_max,
            "publish_retry_timeout": group.rabbit_publish_timeout}


def database_url(conf=CONF):
    if conf.database.connection:
        return conf.database.connection
    return "sqlite:///" + os.path.join(conf.state_path, "mininova.sqlite")
