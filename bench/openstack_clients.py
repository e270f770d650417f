"""What P10 (bench/phase_openstack.py) needs to drive the bench's stack with
the unmodified OpenStack clients: a Keystone user with a password, a
clouds.yaml for the ``openstack`` CLI, an openstacksdk connection, and the
API's own account of the requests it answered (its Prometheus histogram of
server-side time per route, and its CPU time)."""
import json
import os
import re
import subprocess
import sys
import time
import urllib.request

USER = "p10-admin"
PASSWORD = "p10 bench secret"
CLOUD = "bench"
OPENSTACK = os.path.join(os.path.dirname(sys.executable), "openstack")
# The modules `openstack server create` imports before it sends a request.
CLI_IMPORTS = ("import openstackclient.shell, openstackclient.compute.v2.server, "
               "openstack.connection")

_SAMPLE = re.compile(r'^mininova_api_request_duration_seconds_(sum|count)\{([^}]*)\} (\S+)$')
_LABEL = re.compile(r'(\w+)="([^"]*)"')


class Clients:
    """A password user in the stack's admin project (the project of the
    harness's /v1 token, so every path shares one quota) and the clients
    that log in as it."""

    def __init__(self, stack, workdir):
        self.stack = stack
        stack.manage("user", "create", USER, "--project", "admin", "--role", "admin",
                     "--password-stdin", stdin=PASSWORD + "\n")
        self.auth = {"auth_url": stack.url + "/identity/v3", "username": USER,
                     "password": PASSWORD, "project_name": "admin",
                     "user_domain_name": "Default", "project_domain_name": "Default"}
        self.clouds_yaml = os.path.join(workdir, "clouds.yaml")
        with open(self.clouds_yaml, "w") as f:   # YAML reads JSON
            json.dump({"clouds": {CLOUD: {"auth": self.auth, "region_name": "RegionOne",
                                          "identity_api_version": 3}}}, f)

    def cli(self, *args, timeout=600):
        """``openstack --os-cloud bench ARGS -f json``: (seconds, parsed output)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
        env["OS_CLIENT_CONFIG_FILE"] = self.clouds_yaml
        t = time.monotonic()
        proc = subprocess.run([OPENSTACK, "--os-cloud", CLOUD, *args, "-f", "json"], env=env,
                              capture_output=True, text=True, timeout=timeout)
        seconds = time.monotonic() - t
        if proc.returncode != 0:
            raise RuntimeError("openstack %s failed: %s" % (" ".join(args), proc.stderr[-2000:]))
        return seconds, json.loads(proc.stdout)

    def sdk(self):
        import openstack   # the SDK only where P10 runs
        return openstack.connect(region_name="RegionOne", interface="public", **self.auth)

    def metrics(self):
        """{(method, route): (seconds, count)} the API has answered so far."""
        with urllib.request.urlopen(self.stack.url + "/metrics", timeout=30) as resp:
            text = resp.read().decode()
        return parse_durations(text)


def parse_durations(text):
    """The request-duration histogram's sums and counts by (method, route)
    from Prometheus' text format."""
    out = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if not m:
            continue
        labels = dict(_LABEL.findall(m.group(2)))
        key = (labels.get("method"), labels.get("route"))
        seconds, count = out.get(key, (0.0, 0))
        if m.group(1) == "sum":
            seconds += float(m.group(3))
        else:
            count += int(float(m.group(3)))
        out[key] = (seconds, count)
    return out


def surface(route):
    """Which API a route belongs to: v1, compute, image, identity or other."""
    for name in ("compute", "image", "identity"):
        if route.startswith("/" + name):
            return name
    return "v1" if route.startswith("/v1") else "other"


def by_surface(before, after):
    """{surface: (server seconds, requests)} answered between two scrapes
    (the scrapes of /metrics themselves are "other")."""
    out = {}
    for key, (seconds, count) in after.items():
        s0, c0 = before.get(key, (0.0, 0))
        if count > c0:
            name = surface(key[1] or "")
            total = out.get(name, (0.0, 0))
            out[name] = (total[0] + seconds - s0, total[1] + count - c0)
    return out


def import_seconds():
    """Seconds a fresh interpreter spends importing the CLI's modules (the
    client's start-up, paid on every command)."""
    code = "import time; t = time.perf_counter(); %s; print(time.perf_counter() - t)" % (
        CLI_IMPORTS)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    return float(proc.stdout.strip().splitlines()[-1])
