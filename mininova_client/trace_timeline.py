"""What ``mininova trace`` does with tapped messages, standard library only:
read them (``parse``), keep those of the request or VM followed (``Follow``),
notice the end of the action (``DoneWatch``) and print the timeline
(``Timeline``: aligned text lines, or JSON lines)."""
import collections
import dataclasses
import datetime
import json
import sys
import time

from mininova_client import CLIError
from mininova_client.api import quote

EXCHANGE = "mininova"
DLX = "mininova.dlx"
REPLY_PREFIX = "mininova.reply."
# Casts the API sends: the first one of a VM names the action --until-done waits for.
API_METHODS = frozenset({
    "build_instances", "schedule_instance", "terminate_instance", "stop_instance",
    "start_instance", "reboot_instance", "pause_instance", "unpause_instance",
    "suspend_instance", "resume_instance"})
# Arguments worth a column, in this order, with their label.
KEY_ARGS = (("host", "host"), ("task_state", "task"), ("power_state", "power"),
            ("event", "event"), ("result", "result"), ("hard", "hard"), ("binary", "binary"),
            ("ip_address", "ip"), ("lines", "lines"), ("reason", "reason"),
            ("message", "message"))


@dataclasses.dataclass
class Tapped:
    """One message as the tap received it."""
    body: bytes
    exchange: str = EXCHANGE
    routing_key: str = ""
    correlation_id: str | None = None
    reply_to: str | None = None
    headers: dict | None = None
    received: float = dataclasses.field(default_factory=time.time)


# -- reading messages ---------------------------------------------------------

def parse(tapped):
    """A Tapped message -> record (dict): kind cast|call|reply|dead|unreadable,
    method, from, to, request_id, args, version, result/failure. Tolerant:
    never raises for a body it does not understand."""
    rec = {"received": tapped.received, "kind": "unreadable", "method": None,
           "from": None, "to": tapped.routing_key, "request_id": None, "args": None,
           "version": None, "correlation_id": tapped.correlation_id}
    try:
        raw = tapped.body.decode("utf-8") if isinstance(tapped.body, bytes) else tapped.body
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError, TypeError):
        body = None
    if not isinstance(body, dict):
        rec["body"] = _short(tapped.body)
        return rec
    rec["from"] = body.get("sender") if isinstance(body.get("sender"), str) else None
    if "method" in body:
        rec["kind"] = "call" if tapped.reply_to else "cast"
        rec["method"] = str(body.get("method"))
        rec["args"] = body.get("args") if isinstance(body.get("args"), dict) else {}
        ctxt = body.get("context") if isinstance(body.get("context"), dict) else {}
        rec["request_id"] = ctxt.get("request_id")
        rec["version"] = body.get("version")
    elif "result" in body or "failure" in body:
        rec["kind"] = "reply"
        if "result" in body:
            rec["result"] = body["result"]
        else:
            rec["failure"] = body["failure"]
    if tapped.exchange == DLX:
        rec["kind"] = "dead"
        deaths = (tapped.headers or {}).get("x-death") or [{}]
        rec["to"] = (deaths[0].get("queue") if isinstance(deaths[0], dict) else None) \
            or tapped.routing_key
    return rec


def references(value, wanted, depth=0):
    """Does ``wanted`` (a VM id) appear as a value anywhere in ``value``?"""
    if value == wanted:
        return True
    if depth > 4:
        return False
    if isinstance(value, dict):
        return any(references(v, wanted, depth + 1) for v in value.values())
    if isinstance(value, list):
        return any(references(v, wanted, depth + 1) for v in value)
    return False


def instance_id_of(rec):
    args = rec.get("args") or {}
    if isinstance(args.get("instance_id"), str):
        return args["instance_id"]
    instance = args.get("instance")
    if isinstance(instance, dict) and isinstance(instance.get("id"), str):
        return instance["id"]
    return None


class Follow:
    """Which messages belong to the trace: those of ``request_id``, those
    whose arguments name ``vm_id``, or (neither) all; replies follow their
    call. Also fills a reply's method/from/to/request_id from its call."""

    def __init__(self, request_id=None, vm_id=None):
        self.request_id = request_id
        self.vm_id = vm_id
        self._calls = collections.OrderedDict()  # correlation id -> (call record, followed)

    @property
    def everything(self):
        return not self.request_id and not self.vm_id

    def accept(self, rec):
        if rec["kind"] == "reply":
            return self._reply(rec)
        followed = self._matches(rec)
        if rec["kind"] == "call" and rec["correlation_id"]:
            self._calls[rec["correlation_id"]] = (rec, followed)
            while len(self._calls) > 10000:  # calls whose reply we never saw
                self._calls.popitem(last=False)
        return followed

    def _matches(self, rec):
        if self.everything:
            return True
        if self.request_id and rec["request_id"] == self.request_id:
            return True
        return bool(self.vm_id) and references(rec.get("args"), self.vm_id)

    def _reply(self, rec):
        call, followed = self._calls.pop(rec["correlation_id"], (None, self.everything))
        if call is not None:
            rec["method"] = call["method"]
            rec["request_id"] = call["request_id"]
            rec["from"] = rec["from"] or call["to"]
            rec["to"] = call["from"] or rec["to"]
            rec["call"] = {"args": call["args"]}
        return followed


class DoneWatch:
    """``--until-done``: which request is the action, and did it end?

    The action is the given request, or with ``--vm`` the first API cast
    that names the VM. It ended on its ``action_finish`` cast (deletes and
    power actions), the reply to ``instance_spawned`` (a create), or - for
    endings that send no message, e.g. no valid host - when the API shows
    the action finished."""

    def __init__(self, request_id=None):
        self.request_id = request_id
        self.instance_id = None
        self.done = False

    def see(self, rec):
        if self.request_id is None and rec["kind"] == "cast" and rec["method"] in API_METHODS:
            self.request_id = rec["request_id"]
        if rec["request_id"] is None or rec["request_id"] != self.request_id:
            return
        self.instance_id = self.instance_id or instance_id_of(rec)
        if rec["kind"] == "cast" and rec["method"] == "action_finish":
            self.done = True
        elif rec["kind"] == "reply" and rec["method"] == "instance_spawned" \
                and rec.get("result") is True:
            self.done = True

    def check_api(self, client, vm_id=None):
        """Ask the API whether the action finished (errors: not yet)."""
        instance_id = vm_id or self.instance_id
        if client is None or not self.request_id or not instance_id:
            return False
        try:
            action = client.get("/v1/vms/%s/actions/%s" % (quote(instance_id),
                                                           quote(self.request_id)))["action"]
        except (CLIError, KeyError, TypeError):
            return False
        self.done = self.done or action.get("finish_time") is not None
        return self.done


# -- writing the timeline -----------------------------------------------------

def _short(value, limit=60):
    text = value if isinstance(value, str) else json.dumps(value, default=str,
                                                           ensure_ascii=False)
    if isinstance(value, bytes):
        text = value.decode("utf-8", "replace")
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[:limit - 1] + "…"


def key_args(rec):
    """The arguments a person looks for, as ``k=v`` words."""
    args = rec.get("args") or {}
    words = []
    instance = args.get("instance") if isinstance(args.get("instance"), dict) else None
    vm_id = instance_id_of(rec)
    if vm_id:
        name = instance.get("name") if instance else None
        words.append("vm=%s%s" % (vm_id[:8], "(%s)" % name if name else ""))
    if isinstance(args.get("instance_ids"), list):
        words.append("vms=%d" % len(args["instance_ids"]))
    image = args.get("image")
    if isinstance(image, dict):
        words.append("image=%s" % (image.get("name") or str(image.get("id", ""))[:8]))
    for key, label in KEY_ARGS:
        if args.get(key) is not None:
            value = args[key]
            words.append("%s=%s" % (label, _short(value, 50) if key in ("reason", "message")
                                    else _short(value, 30)))
    if isinstance(args.get("events"), list) and args["events"]:
        words.append("events=%d" % len(args["events"]))
    if rec["kind"] == "reply":
        if "failure" in rec:
            failure = rec["failure"] if isinstance(rec["failure"], dict) else {}
            words.append("failure=%s: %s" % (failure.get("class"),
                                             _short(failure.get("message", ""), 50)))
        else:
            words.append("result=%s" % _short(rec.get("result"), 50))
    if rec.get("version"):
        words.append("v%s" % rec["version"])
    return words


class Timeline:
    """Formats accepted records: aligned text lines, or JSON lines."""

    def __init__(self, fmt="table", out=None):
        self.fmt = fmt
        self.out = out or sys.stdout
        self.start = None
        self._widths = [28, 26]  # route, what: grow with the longest seen so far

    def record(self, rec):
        """The JSON form of a record (what ``-f json`` prints, one per line)."""
        if self.start is None:
            self.start = rec["received"]
        out = {k: v for k, v in rec.items() if k != "received"}
        out["t_ms"] = int(round((rec["received"] - self.start) * 1000))
        out["time"] = datetime.datetime.fromtimestamp(
            rec["received"], datetime.timezone.utc).isoformat(timespec="milliseconds")
        return out

    def line(self, rec):
        """``+  12 ms  14:02:11.544  scheduler@ctl → compute.ctl  cast build_instance  vm=…``"""
        if self.start is None:
            self.start = rec["received"]
        t_ms = int(round((rec["received"] - self.start) * 1000))
        wall = datetime.datetime.fromtimestamp(rec["received"]).strftime("%H:%M:%S.%f")[:-3]
        to = rec["to"] or "?"
        if to.startswith(REPLY_PREFIX):
            to = "(reply queue)"
        route = "%s → %s" % (rec["from"] or "?", to)
        what = "%s %s" % (rec["kind"], rec["method"] or "")
        words = key_args(rec)
        if rec["kind"] == "unreadable":
            words = [rec.get("body", "")]
        what = what.strip()
        self._widths = [max(self._widths[0], len(route)), max(self._widths[1], len(what))]
        return "+%6d ms  %s  %-*s  %-*s  %s  %s" % (
            t_ms, wall, self._widths[0], route, self._widths[1], what, " ".join(words),
            rec["request_id"] or "-")

    def write(self, rec):
        text = json.dumps(self.record(rec), default=str, ensure_ascii=False) \
            if self.fmt == "json" else self.line(rec)
        print(text, file=self.out, flush=True)
