"""``mininova trace [REQUEST_ID | --vm NAME]``: watch a request's RPC messages
travel, live, as a timeline (one line per message).

How: a tap of our own. The trace declares an exclusive, auto-delete queue
bound to the ``mininova`` topic exchange with ``#`` (RabbitMQ copies every
message to each queue whose binding matches) and to ``mininova.dlx`` (dead
letters). The daemons do nothing different: when nobody traces there is no
such queue and nothing costs anything; the tap goes away with the command.
Call replies travel on the same exchange (see ``common.rpc.kombu_transport``)
so they are shown too, matched to their call by correlation id.

This command needs kombu (the rest of the CLI is standard library only): it
imports it lazily and says so when it is missing. The bus address comes from
``--transport-url``, ``$MININOVA_TRANSPORT_URL`` or ``[DEFAULT] transport_url``
of ``--config-file`` (default ``$MININOVA_CONFIG`` or
/etc/mininova/mininova.conf), like the daemons.
"""
import collections
import configparser
import os
import socket
import sys
import time
import uuid

from mininova_client import API_ERROR, CONNECT, USAGE, WAIT_TIMEOUT, CLIError
from mininova_client.api import APIError, quote
from mininova_client.trace_timeline import (DLX, EXCHANGE, DoneWatch, Follow, Tapped,
                                            Timeline, parse)

DEFAULT_CONFIG = "/etc/mininova/mininova.conf"
DEFAULT_TRANSPORT_URL = "rabbit://guest:guest@127.0.0.1:5672/"
TAP_MAX_LENGTH = 10000  # a stalled trace must not fill the broker's memory
_GRACE = 0.5       # after the action ended: trailing messages (replies, events)
_IDLE_CHECK = 1.0  # quiet this long: ask the API whether the action ended


# -- the tap --------------------------------------------------------------------

def transport_url(args):
    """--transport-url, $MININOVA_TRANSPORT_URL, or the config file's
    ``[DEFAULT] transport_url`` (the daemons' default when none says)."""
    if args.transport_url:
        return args.transport_url
    if os.environ.get("MININOVA_TRANSPORT_URL"):
        return os.environ["MININOVA_TRANSPORT_URL"]
    path = args.config_file or os.environ.get("MININOVA_CONFIG")
    if not path:
        if not os.path.exists(DEFAULT_CONFIG):
            return DEFAULT_TRANSPORT_URL
        path = DEFAULT_CONFIG
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f)
    except OSError as e:
        raise CLIError("error: cannot read the config file %s: %s (pass --transport-url "
                       "or set MININOVA_TRANSPORT_URL)" % (path, e.strerror or e), USAGE) from None
    except configparser.Error as e:
        raise CLIError("error: %s is not a valid config file: %s" % (path, e), USAGE) from None
    return parser.defaults().get("transport_url") or DEFAULT_TRANSPORT_URL


def redact(url):
    """The url without its password, for messages."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at:
        return url
    return "%s%s%s:***@%s" % (scheme, sep, creds.split(":", 1)[0], host)


def _import_kombu():
    try:
        import kombu
    except ImportError:
        raise CLIError("error: `mininova trace` needs the Python package kombu (the rest of "
                       "the CLI does not): run it from mininova's virtualenv "
                       "(.venv/bin/mininova trace ...) or `pip install kombu`",
                       API_ERROR) from None
    return kombu


class Tap:
    """An exclusive, auto-delete queue bound to all of mininova's traffic.

    Exclusive: RabbitMQ deletes it when our connection closes, however the
    command ends. ``x-max-length``: a trace that stops reading (suspended
    terminal) drops its oldest copies instead of growing the broker."""

    def __init__(self, url, connect_timeout=5.0):
        if url.split("://", 1)[0] not in ("rabbit", "amqp"):
            raise CLIError("error: cannot trace %s: only rabbit:// transports carry "
                           "messages between processes" % redact(url), USAGE)
        kombu = _import_kombu()
        self.queue_name = "mininova.trace." + uuid.uuid4().hex[:12]
        self._pending = collections.deque()
        self._conn = kombu.Connection(
            "amqp://" + url.split("://", 1)[1], connect_timeout=connect_timeout,
            transport_options={"client_properties": {
                "connection_name": "mininova trace (pid %d)" % os.getpid()}})
        try:
            self._conn.ensure_connection(max_retries=0)
            channel = self._conn.channel()
            # Same exchange arguments as common.rpc.kombu_transport declares.
            topic = kombu.Exchange(EXCHANGE, "topic", durable=True)
            dead = kombu.Exchange(DLX, "fanout", durable=True)
            queue = kombu.Queue(self.queue_name, exclusive=True, auto_delete=True,
                                durable=False,
                                queue_arguments={"x-max-length": TAP_MAX_LENGTH},
                                bindings=[kombu.binding(topic, routing_key="#"),
                                          kombu.binding(dead, routing_key="")])
            queue(channel).declare()
            kombu.Consumer(channel, queues=[queue], on_message=self._on_message,
                           no_ack=True, auto_declare=False).consume()
        except Exception as e:
            self.close()
            raise CLIError("error: cannot tap the message bus at %s: %s"
                           % (redact(url), e), CONNECT) from None

    def _on_message(self, message):
        props, info = message.properties, message.delivery_info
        self._pending.append(Tapped(
            body=message.body, exchange=info.get("exchange", ""),
            routing_key=info.get("routing_key", ""),
            correlation_id=props.get("correlation_id"), reply_to=props.get("reply_to"),
            headers=message.headers))

    def poll(self, timeout):
        """Messages received within ``timeout`` seconds (maybe none)."""
        try:
            self._conn.drain_events(timeout=timeout)
        except socket.timeout:
            pass
        except Exception as e:
            raise CLIError("error: lost the message bus: %s" % e, API_ERROR) from None
        tapped = list(self._pending)
        self._pending.clear()
        return tapped

    def close(self):
        try:
            self._conn.release()
        except Exception:  # closing anyway; the broker drops the queue with us
            pass


# -- the command --------------------------------------------------------------

def add_parser(sub, common):
    p = sub.add_parser(
        "trace", parents=[common],
        help="follow the RPC messages of a request live (needs kombu)",
        description="Print the RPC messages of a request (or of a VM, or all) as they "
                    "travel over RabbitMQ: time, sender -> queue, method, key arguments, "
                    "request id. With -f json, one JSON object per line.")
    p.add_argument("request_id", nargs="?", metavar="REQUEST_ID",
                   help="only this request's messages (the X-Request-Id of an API call)")
    p.add_argument("--vm", metavar="NAME",
                   help="only messages about this VM (name or id; waits for it to exist)")
    p.add_argument("--until-done", action="store_true",
                   help="stop when the action has ended: the request's, or with --vm "
                        "the first one the API starts on the VM after the trace began")
    p.add_argument("--timeout", type=float, metavar="S",
                   help="stop after S seconds (exit 4 if --until-done did not end)")
    p.add_argument("--transport-url", metavar="URL",
                   help="the message bus (default: $MININOVA_TRANSPORT_URL, else "
                        "[DEFAULT] transport_url of --config-file)")
    p.add_argument("--config-file", metavar="PATH",
                   help="mininova.conf to read transport_url from (default: "
                        "$MININOVA_CONFIG or %s)" % DEFAULT_CONFIG)
    p.set_defaults(func=run, offline=True)
    return p


def _find_vm(client, ref):
    """The VM's id, or None while it does not exist."""
    try:
        return client.get("/v1/vms/" + quote(ref))["vm"]["id"]
    except APIError as e:
        if e.status == 404:
            return None
        raise


def run(_client, args, out):
    """Tap first, then resolve the VM: no message is missed meanwhile."""
    from mininova_client.api import Client
    if args.request_id and args.vm:
        raise CLIError("error: give a REQUEST_ID or --vm NAME, not both", USAGE)
    if args.until_done and not (args.request_id or args.vm):
        raise CLIError("error: --until-done needs a REQUEST_ID or --vm NAME", USAGE)
    if args.timeout is not None and args.timeout <= 0:
        raise CLIError("error: --timeout must be a positive number of seconds", USAGE)
    client = Client(args.url, args.token) if args.url and args.token else None
    if args.vm and client is None:
        raise CLIError("error: --vm needs the API to find the VM: pass --url and --token "
                       "or set MININOVA_URL and MININOVA_TOKEN", USAGE)
    url = transport_url(args)
    tap = Tap(url)
    follow = Follow(request_id=args.request_id)
    watch = DoneWatch(args.request_id) if args.until_done else None
    timeline = Timeline(args.format, out.out)
    what = ("request %s" % args.request_id if args.request_id
            else "VM %s" % args.vm if args.vm else "all messages")
    print("Tracing %s on %s (Ctrl-C to stop)" % (what, redact(url)), file=sys.stderr,
          flush=True)
    shown, held = 0, []
    start = time.monotonic()
    deadline = start + args.timeout if args.timeout else None
    last_message = next_lookup = next_check = start
    done_at, waiting_said = None, False
    try:
        while True:
            now = time.monotonic()
            if (deadline is not None and now >= deadline) or (done_at and now >= done_at):
                break
            if args.vm and follow.vm_id is None and now >= next_lookup:
                follow.vm_id = _find_vm(client, args.vm)
                next_lookup = now + 0.3
                if follow.vm_id is None and not waiting_said:
                    waiting_said = True
                    print("Waiting for VM %s to exist" % args.vm, file=sys.stderr, flush=True)
            tapped = tap.poll(0.1)
            if tapped:
                last_message = time.monotonic()
                held.extend(tapped)
            if args.vm and follow.vm_id is None:
                continue  # keep them until we know which VM id to look for
            for message in held:
                rec = parse(message)
                if follow.accept(rec):
                    timeline.write(rec)
                    shown += 1
                    if watch:
                        watch.see(rec)
            held = []
            now = time.monotonic()
            if watch and not watch.done and now - last_message >= _IDLE_CHECK \
                    and now >= next_check:
                next_check = now + _IDLE_CHECK
                watch.check_api(client, follow.vm_id)
            if watch and watch.done and done_at is None:
                done_at = time.monotonic() + _GRACE
    except KeyboardInterrupt:
        pass  # the usual way to stop a trace
    finally:
        tap.close()
    print("%d message%s shown" % (shown, "" if shown == 1 else "s"), file=sys.stderr)
    if watch and not watch.done:
        raise CLIError("trace: the action had not ended after %s s (--timeout)"
                       % ("%g" % args.timeout), WAIT_TIMEOUT)
    return 0
