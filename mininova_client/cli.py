"""``mininova``: the command-line client of the mininova API (like
``openstack`` for Nova). Endpoint and token from ``--url``/``--token`` or
``MININOVA_URL``/``MININOVA_TOKEN``; tables for people, ``-f json`` for
scripts. Exit codes: see ``mininova_client``."""
import argparse
import os
import sys

from mininova_client import USAGE, CLIError, __version__
from mininova_client import resources as res
from mininova_client import trace
from mininova_client import vms
from mininova_client.api import Client
from mininova_client.format import Output

EPILOG = """environment:
  MININOVA_URL      API endpoint, e.g. http://127.0.0.1:8774 (or --url)
  MININOVA_TOKEN    token, from `mininova-manage token create USER` (or --token)
  MININOVA_PROJECT  your project, for `quota show` without PROJECT_ID

exit codes: 0 ok, 1 API error, 2 usage error, 3 --wait ended in ERROR,
            4 --wait timed out, 5 cannot connect"""


def _options(parser, suppress):
    """The options every command takes, before or after the command words.
    In sub-commands they default to SUPPRESS: given there, they win; not
    given, the top-level value (or default) stays."""
    def default(value):
        return argparse.SUPPRESS if suppress else value
    parser.add_argument("--url", default=default(os.environ.get("MININOVA_URL")),
                        help="API endpoint (default: $MININOVA_URL)")
    parser.add_argument("--token", default=default(os.environ.get("MININOVA_TOKEN")),
                        help="auth token (default: $MININOVA_TOKEN)")
    parser.add_argument("-f", "--format", choices=("table", "json"),
                        default=default("table"), help="output format (default: table)")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="mininova", description="Command-line client of the mininova API.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version="%(prog)s " + __version__)
    _options(parser, suppress=False)
    common = argparse.ArgumentParser(add_help=False)
    _options(common, suppress=True)
    wait_opts = argparse.ArgumentParser(add_help=False)
    wait_opts.add_argument("--wait", action="store_true",
                           help="wait until done, showing progress (exit 3 on ERROR)")
    wait_opts.add_argument("--timeout", type=float, default=300.0,
                           help="seconds --wait waits at most (default 300; exit 4)")
    sub = parser.add_subparsers(dest="resource", metavar="RESOURCE", required=True)
    vms.add_parsers(sub, common, wait_opts)

    def group(name, help_text):
        return sub.add_parser(name, help=help_text).add_subparsers(
            dest="command", metavar="COMMAND", required=True)

    def command(tree, name, func, help_text, *positionals):
        p = tree.add_parser(name, parents=[common], help=help_text)
        for arg, arg_help in positionals:
            p.add_argument(arg, help=arg_help)
        p.set_defaults(func=func)
        return p

    image = group("image", "images")
    command(image, "list", res.image_list, "list images")
    command(image, "show", res.image_show, "show an image", ("name", "image name or id"))
    p = command(image, "add", res.image_add, "upload a qcow2 image (admin)",
                ("name", "image name"), ("file", "qcow2 file"))
    p.add_argument("--min-ram", type=int, metavar="MB", help="minimum RAM of a flavor")
    p.add_argument("--min-disk", type=int, metavar="GB", help="minimum disk of a flavor")

    flavor = group("flavor", "flavors")
    command(flavor, "list", res.flavor_list, "list flavors")
    p = command(flavor, "create", res.flavor_create, "(controller only: mininova-manage)")
    p.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    p.set_defaults(offline=True)

    host = group("host", "compute hosts (admin)")
    command(host, "list", res.host_list, "list compute hosts and their resources")
    command(host, "show", res.host_show, "show a compute host", ("name", "host name"))

    service = group("service", "daemons (admin)")
    command(service, "list", res.service_list, "list services and their heartbeats")
    p = command(service, "disable", res.service_set, "keep new VMs off a host",
                ("service", "host name or service id"))
    p.add_argument("--reason", help="why (shown in service list)")
    p.set_defaults(disable=True)
    p = command(service, "enable", res.service_set, "let new VMs onto a host again",
                ("service", "host name or service id"))
    p.set_defaults(disable=False, reason=None)

    groups = group("server-group", "server groups (affinity / anti-affinity)")
    p = command(groups, "create", res.group_create, "create a server group",
                ("name", "group name"))
    p.add_argument("--policy", required=True, choices=("affinity", "anti-affinity"))
    command(groups, "list", res.group_list, "list server groups")
    command(groups, "show", res.group_show, "show a server group", ("name", "name or id"))
    command(groups, "delete", res.group_delete, "delete a server group", ("name", "name or id"))

    quota = group("quota", "project quotas")
    p = command(quota, "show", res.quota_show, "limits and usage of a project")
    p.add_argument("project", nargs="?", help="project id or name (default: yours)")
    p = command(quota, "set", res.quota_set, "set a project's limits (admin; -1 = unlimited)",
                ("project", "project id or name"))
    for name, unit in (("instances", "N"), ("cores", "N"), ("ram", "MB")):
        p.add_argument("--" + name, type=int, metavar=unit)

    trace.add_parser(sub, common)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)  # a usage error exits 2
    out = Output(args.format)
    try:
        if getattr(args, "offline", False):
            return args.func(None, args, out) or 0
        if not args.url:
            raise CLIError("error: no API endpoint: pass --url or set MININOVA_URL "
                           "(e.g. http://127.0.0.1:8774)", USAGE)
        if not args.token:
            raise CLIError("error: no token: pass --token or set MININOVA_TOKEN "
                           "(an operator makes one with `mininova-manage token create USER`)",
                           USAGE)
        return args.func(Client(args.url, args.token), args, out) or 0
    except CLIError as e:
        sys.stdout.flush()
        print(e.message, file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `mininova vm list | head -1`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
