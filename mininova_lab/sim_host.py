"""Simulated compute hosts for multi-host tests (deploy/lab/sim-host.sh).

Each SimHost has its own real libvirtd + virtlogd (a private mount namespace
with its own /etc, /run, /var/lib, /var/log and /var/cache libvirt dirs) and its
own network namespace ``mn-<name>`` with address ``10.77.<index>.2``; the root
namespace side of its veth is ``10.77.<index>.1`` (``gateway_ip``), where
RabbitMQ (and any port passed to ``forward``) is reachable.

    with SimHost("h1", base_dir=tmp) as h:     # index picked automatically
        h.libvirt_uri      # qemu:///system?socket=<tmp>/h1/run/libvirt-sock
        h.popen([sys.executable, "-m", "nova_compute.cmd", ...])   # in its netns

A compute agent for such a host needs in its config: ``[libvirt]
connection_uri = <libvirt_uri>`` and ``virt_type = qemu``, ``transport_url =
rabbit://USER:PASSWORD@<gateway_ip>:<RabbitMQ's port>/<vhost>``, ``[compute] image_api_url``
on an address it can reach (``forward(api_port)`` and ``http://<gateway_ip>:
<api_port>``), ``network_name = ""`` unless the host was made with
``guest_network=True``, and instances/image-cache paths of its own (never under
/var/lib/libvirt: the host's libvirtd sees its private copy of that dir).
Needs root.
"""
import os
import random
import subprocess
import time

from mininova_lab import services

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "deploy", "lab", "sim-host.sh")
DEFAULT_BASE = "/var/lib/mininova-lab"
EXIT_INDEX_TAKEN = 3


class SimHostError(RuntimeError):
    pass


def parse_facts(text):
    """KEY=VALUE lines (sim-host.sh output) -> dict."""
    facts = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.isidentifier():
            facts[key] = value
    return facts


def _free_indexes():
    taken = {int(n[3:]) for n in os.listdir("/sys/class/net")
             if n.startswith("mnh") and n[3:].isdigit()}
    free = [i for i in range(100, 255) if i not in taken]
    random.shuffle(free)
    return free


class SimHost:
    """One simulated compute host. ``index=None`` picks a free one (100-254;
    retried when another process takes it at the same moment)."""

    def __init__(self, name, index=None, base_dir=DEFAULT_BASE, forward=None,
                 guest_network=False, timeout=30):
        self.name = name
        self.index = index
        self.base_dir = str(base_dir)
        # RabbitMQ's port, unless told otherwise.
        self.forward_ports = tuple((services.rabbit_port(),) if forward is None else forward)
        self.guest_network = guest_network
        self.timeout = timeout
        self.libvirt_uri = self.netns = self.host_ip = self.gateway_ip = None
        self.lab_dir = os.path.join(self.base_dir, name)
        self.facts = {}
        self.up_seconds = None   # how long the last up() took

    # -- the script ---------------------------------------------------------
    def _script(self, *args, env=None, check=True):
        proc = subprocess.run(["bash", SCRIPT, *args], capture_output=True, text=True,
                              env=env, timeout=self.timeout * 4 + 30)
        if check and proc.returncode != 0:
            raise SimHostError("sim-host.sh %s failed (%d): %s" % (
                " ".join(args), proc.returncode, proc.stderr.strip()))
        return proc

    def _set_facts(self, facts):
        self.facts = facts
        self.libvirt_uri = facts["LIBVIRT_URI"]
        self.netns = facts["NETNS"]
        self.host_ip = facts["HOST_IP"]
        self.gateway_ip = facts["GATEWAY_IP"]
        self.index = int(facts["INDEX"])
        self.lab_dir = facts.get("LAB_DIR", self.lab_dir)

    def up(self):
        env = dict(os.environ, SIM_HOST_TIMEOUT=str(self.timeout),
                   SIM_HOST_FORWARD=" ".join(str(p) for p in self.forward_ports))
        if self.guest_network:
            env["SIM_HOST_GUEST_NET"] = "1"
        candidates = [self.index] if self.index is not None else _free_indexes()[:10]
        t0 = time.monotonic()
        for index in candidates:
            proc = self._script("up", self.name, str(index), self.base_dir, env=env, check=False)
            if proc.returncode == 0:
                self._set_facts(parse_facts(proc.stdout))
                self.up_seconds = time.monotonic() - t0
                return self
            if proc.returncode == EXIT_INDEX_TAKEN and self.index is None:
                self._script("down", self.name, self.base_dir, check=False)
                continue
            raise SimHostError("sim-host.sh up %s %s failed (%d): %s" % (
                self.name, index, proc.returncode, proc.stderr.strip()))
        raise SimHostError("no free INDEX for %s (tried %s)" % (self.name, candidates))

    def down(self):
        self._script("down", self.name, self.base_dir)

    def status(self):
        """The facts plus LIBVIRTD_PID/_RSS_KB, VIRTLOGD_PID/_RSS_KB, DOMAINS, STATE."""
        return parse_facts(self._script("status", self.name, self.base_dir, check=False).stdout)

    def forward(self, port, target_port=None):
        """Make 127.0.0.1:target_port (default: port) of the root namespace
        reachable from this host at gateway_ip:port."""
        spec = "%d:%d" % (port, target_port or port)
        self._script("forward", self.name, spec, self.base_dir)
        return "%s:%d" % (self.gateway_ip, port)

    def set_link(self, up):
        """Plug (True) or unplug (False) the host's network cable."""
        self._script("link", self.name, "up" if up else "down", self.base_dir)

    # -- running things on the host -------------------------------------------
    def netns_argv(self, argv):
        return ["ip", "netns", "exec", self.netns, *argv]

    def private_argv(self, argv, cwd=None):
        """argv run in this host's network namespace and in its private mount
        namespace (the one its libvirtd has: its own /var/lib/libvirt, ...),
        in ``cwd`` (default: this process's)."""
        with open(os.path.join(self.lab_dir, "pids", "libvirtd.pid")) as f:
            pid = int(f.read().strip())
        return ["nsenter", "--mount=/proc/%d/ns/mnt" % pid, "--net=/run/netns/%s" % self.netns,
                "--wd=%s" % (cwd or os.getcwd()), "--", *argv]

    def private_path(self, path):
        """Where a path under /var/lib/libvirt of this host's mount namespace
        is seen from the root one."""
        rel = os.path.relpath(path, "/var/lib/libvirt")
        if rel.startswith(".."):
            raise ValueError("%s is not under /var/lib/libvirt" % path)
        return os.path.join(self.lab_dir, "lib", rel)

    def popen(self, argv, private=False, **kw):
        """subprocess.Popen of argv inside this host's network namespace;
        ``private``: and in its mount namespace (private_argv)."""
        if private:
            return subprocess.Popen(self.private_argv(argv, kw.get("cwd")), **kw)
        return subprocess.Popen(self.netns_argv(argv), **kw)

    def run(self, argv, **kw):
        """subprocess.run of argv inside this host's network namespace."""
        return subprocess.run(self.netns_argv(argv), **kw)

    def virsh(self, *args, timeout=60):
        return subprocess.run(["virsh", "-c", self.libvirt_uri, *args], capture_output=True,
                              text=True, timeout=timeout)

    def connect(self):
        import libvirt
        return libvirt.open(self.libvirt_uri)

    # -- context manager ----------------------------------------------------------
    def __enter__(self):
        try:
            return self.up()
        except BaseException:
            self._script("down", self.name, self.base_dir, check=False)
            raise

    def __exit__(self, *exc):
        self.down()
        return False

    def __repr__(self):
        return "SimHost(%s, %s, %s)" % (self.name, self.host_ip, self.libvirt_uri)
