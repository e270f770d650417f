#!/usr/bin/env python3
"""Wait until the mininova API answers (GET /v1) or, with --binary and --host,
until that service heartbeats as "up" in GET /v1/services (needs an admin
token: --token or $MININOVA_TOKEN). Used by deploy/controller.sh and
deploy/compute.sh. Stdlib only.

With --new-heartbeat (the daemon was just started or restarted) only a
heartbeat other than the one seen at the first look counts: a daemon killed
less than service_down_time ago still shows "up" with its last heartbeat,
whether or not its successor ever comes up.

Exit status: 0 when the condition held before --timeout, 1 when not (the last
reason on stderr), 2 usage.
"""
import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request


def get_json(url, token=None, timeout=5):
    headers = {"X-Auth-Token": token} if token else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                timeout=timeout) as resp:
        return json.loads(resp.read() or b"null")


def api_answers(api):
    get_json(api.rstrip("/") + "/v1")
    return True


def service_state(api, token, binary, host):
    """(state, last_heartbeat) of that service; (None, None) when it has no row."""
    for s in get_json(api.rstrip("/") + "/v1/services", token)["services"]:
        if s["binary"] == binary and s["host"] == host:
            return s["state"], s.get("last_heartbeat")
    return None, None


def service_up(api, token, binary, host):
    return service_state(api, token, binary, host)[0] == "up"


class NewHeartbeat:
    """A check: up, with a heartbeat other than the one ``read()`` showed first."""
    _UNSEEN = object()

    def __init__(self, read):
        self.read = read
        self.first = self._UNSEEN

    def __call__(self):
        state, beat = self.read()
        if self.first is self._UNSEEN:
            self.first = beat
            return False
        return state == "up" and beat != self.first


def wait(check, timeout, interval=0.2, clock=time.monotonic, sleep=time.sleep):
    """Poll check() until it returns True; (True, None) or (False, last reason)."""
    deadline = clock() + timeout
    reason = "not yet"
    while True:
        try:
            if check():
                return True, None
            reason = "not up yet"
        except urllib.error.HTTPError as e:
            reason = "HTTP %d from %s" % (e.code, e.url)
            # A wrong token, or something else than mininova answering there,
            # does not get better by waiting.
            if e.code in (401, 403, 404):
                return False, reason
        except (OSError, ValueError, KeyError, TypeError) as e:
            reason = "%s: %s" % (type(e).__name__, e)
        if clock() >= deadline:
            return False, reason
        sleep(interval)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--api", required=True, help="the API's URL, e.g. http://10.0.0.2:8774")
    p.add_argument("--binary", help="e.g. mininova-compute")
    p.add_argument("--host", help="the service's host name")
    p.add_argument("--token", default=os.environ.get("MININOVA_TOKEN"))
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--new-heartbeat", action="store_true",
                   help="only a heartbeat after the first look counts (the daemon was "
                        "just (re)started)")
    args = p.parse_args(argv)
    if bool(args.binary) != bool(args.host):
        p.error("--binary and --host go together")
    if args.binary:
        if not args.token:
            p.error("--binary needs a token (--token or $MININOVA_TOKEN)")
        what = "%s on %s" % (args.binary, args.host)
        def check():
            return service_up(args.api, args.token, args.binary, args.host)
        if args.new_heartbeat:
            check = NewHeartbeat(lambda: service_state(args.api, args.token, args.binary,
                                                       args.host))
        ok, reason = wait(check, args.timeout)
    else:
        what = "the API at %s" % args.api
        ok, reason = wait(lambda: api_answers(args.api), args.timeout)
    if not ok:
        print("wait-service.py: %s not up after %.0f s (%s)" % (what, args.timeout, reason),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
