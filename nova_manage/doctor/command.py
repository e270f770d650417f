"""``mininova-manage doctor [--role compute|controller|all] [--json]``: which
checks a role needs, running them, printing the findings.

Exit status 0 when nothing failed (warnings do not fail), 1 otherwise.
"""
import json
import os
import sys
import urllib.parse

from common import config, exception
from nova_api import imagestore
from nova_manage.doctor import FAIL, OK, WARN, fail, host_checks, libvirt_checks, \
    service_checks, userprobe

ROLES = ("compute", "controller", "all")
DEFAULT_MIN_FREE_GB = 2.0
COMPUTE_MARKERS = ("mininova-compute", "nova_compute.cmd")


def add_arguments(parser):
    parser.add_argument("--role", choices=ROLES, default="all",
                        help="what this host runs (default: all, a one-host deployment)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--controller-url", help="the API to compare clocks with "
                        "(default: [compute] image_api_url)")
    parser.add_argument("--compute-user", default=None,
                        help="the user mininova-compute runs as (default: the user of a "
                        "running mininova-compute, else the current user)")
    parser.add_argument("--min-free-gb", type=float, default=DEFAULT_MIN_FREE_GB,
                        help="free space the instances and image-cache dirs need "
                             "(default %(default)s)")
    parser.add_argument("--qemu-conf", default=host_checks.QEMU_CONF)
    parser.set_defaults(fn=doctor_command)


def compute_user():
    """The user of a running mininova-compute, else the one running the doctor."""
    return userprobe.process_user(COMPUTE_MARKERS) or userprobe.current_user()


def compute_checks(conf, args):
    """[(name, thunk)] for a compute host. A thunk returns a list of Result."""
    user = args.compute_user or compute_user()
    uri = conf.libvirt.connection_uri
    dirs = {"instances": ("[compute] instances_path", conf.compute.instances_path),
            "image cache": ("[compute] image_cache_path", conf.compute.image_cache_path)}
    checks = []
    if conf.compute.compute_driver == "libvirt":
        checks += [
            ("kvm", lambda: libvirt_checks.check_kvm(conf.libvirt.virt_type)),
            ("libvirt", lambda: libvirt_checks.check_libvirt(uri, user)),
            ("qemu.conf", lambda: host_checks.check_qemu_conf(
                args.qemu_conf, user, {k: p for k, (_, p) in dirs.items()})),
            ("virtlogd", lambda: host_checks.check_virtlogd(_virtlogd_socket(uri))),
            ("network", lambda: libvirt_checks.check_network(uri, conf.compute.network_name)),
        ]
    for label, (option, path) in dirs.items():
        checks.append(("dirs", lambda label=label, option=option, path=path:
                       host_checks.check_dir(label, option, path, user, args.min_free_gb)))
    checks += [
        ("rabbitmq", lambda: service_checks.check_rabbitmq(conf.transport_url)),
        ("clock", lambda: service_checks.check_clock_http(
            args.controller_url or conf.compute.image_api_url)),
    ]
    return checks


def controller_checks(conf, args):
    url = config.database_url(conf)
    store = imagestore.store_path(conf)
    return [
        ("rabbitmq", lambda: service_checks.check_rabbitmq(conf.transport_url)),
        ("database", lambda: service_checks.check_database(url)),
        ("clock", lambda: service_checks.check_clock_database(url)),
        ("dirs", lambda: host_checks.check_dir("image store", "[DEFAULT] state_path", store,
                                                userprobe.current_user(), args.min_free_gb)),
    ]


def select_checks(conf, args):
    checks = []
    if args.role in ("compute", "all"):
        checks += compute_checks(conf, args)
    if args.role in ("controller", "all"):
        seen = {name for name, _ in checks}
        checks += [c for c in controller_checks(conf, args) if c[0] not in seen or
                   c[0] in ("clock", "dirs")]
    return checks


def run_checks(checks):
    """Every check runs, whatever the others found; a check that crashes is a
    failure of that check, not of the doctor."""
    results = []
    for name, thunk in checks:
        try:
            results += thunk()
        except Exception as exc:
            results.append(fail(name, "the check itself failed: %s" % exception.describe(exc)))
    return results


def render_text(results):
    lines = []
    for r in results:
        lines.append("%-5s %s: %s" % ({OK: "ok", WARN: "WARN", FAIL: "FAIL"}[r.status],
                                       r.check, r.what))
        if r.fix and r.status != OK:
            lines.append("  fix: %s" % r.fix)
    counts = summary(results)
    lines.append("%d ok, %d warning(s), %d failure(s)" % (counts[OK], counts[WARN],
                                                           counts[FAIL]))
    return "\n".join(lines)


def summary(results):
    counts = {OK: 0, WARN: 0, FAIL: 0}
    for r in results:
        counts[r.status] += 1
    return counts


def doctor_command(conf, args):
    results = run_checks(select_checks(conf, args))
    failed = any(r.status == FAIL for r in results)
    if args.json:
        print(json.dumps({"ok": not failed, "role": args.role, "summary": summary(results),
                          "results": [r.as_dict() for r in results]}, indent=2))
    else:
        print(render_text(results))
    sys.stdout.flush()
    return 1 if failed else 0


def _virtlogd_socket(uri):
    """A libvirtd with its own socket dir (deploy/lab sim hosts) has its
    virtlogd's socket next to its own."""
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(uri).query)
    if "socket" in query:
        return os.path.join(os.path.dirname(query["socket"][0]), "virtlogd-sock")
    return host_checks.VIRTLOGD_SOCKET
