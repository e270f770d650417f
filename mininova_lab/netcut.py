"""Cutting one lab broker node off the network, and healing it.

The lab's nodes share loopback: a node's own ports (AMQP, Erlang
distribution) catch the connections made to it, not those it made to its
peers from ephemeral ports. So iptables drops, on ``lo`` only, TCP to and
from every local port of the node's sockets at the cut (its listeners and
its ephemeral ends), and the node's processes go into a cgroup (v2) of their
own whose new sockets' packets are dropped too (a socket keeps the cgroup it
was made in, so that match alone misses the existing ones). The rules carry a comment naming this cut;
they are inserted first in INPUT and OUTPUT and removed by their exact spec:
no other rule is touched. Root only."""
import os
import subprocess
import time
import uuid

CGROUP2_ROOTS = ("/sys/fs/cgroup/unified", "/sys/fs/cgroup")


def cgroup2_root():
    for root in CGROUP2_ROOTS:
        if os.path.exists(os.path.join(root, "cgroup.procs")) and os.path.exists(
                os.path.join(root, "cgroup.subtree_control")):
            return root
    raise RuntimeError("no cgroup v2 hierarchy mounted (looked at %s)" % (CGROUP2_ROOTS,))


def _descendants(pid):
    """``pid`` and every process below it."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, ()))
    return found


def _local_ports(pids):
    """Local TCP ports of the sockets ``pids`` hold open."""
    inodes = set()
    for pid in pids:
        try:
            for fd in os.listdir("/proc/%d/fd" % pid):
                try:
                    target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _own_cgroup(pid):
    with open("/proc/%d/cgroup" % pid) as f:
        for line in f:
            if line.startswith("0::"):
                return line[3:].strip()
    return "/"


class NodeCut:
    """``apply()`` cuts node ``index`` of a RabbitCluster off; ``heal()``
    undoes it (idempotent, also when apply() failed half-way)."""

    def __init__(self, cluster, index):
        self.cluster, self.index = cluster, index
        self.root = cgroup2_root()
        self.tag = "mn-cut-" + uuid.uuid4().hex[:8]
        self.group = os.path.join(self.root, self.tag)
        node_dir = cluster.node_dirs[index]
        amqp = cluster.ports[index]
        # rabbit-node.sh: the distribution port is the AMQP port + 20000.
        self.ports = (amqp, amqp + 20000)
        with open(os.path.join(node_dir, "pid")) as f:
            self.pid = int(f.read().strip())
        comment = ["-m", "comment", "--comment", self.tag]
        self.comment = comment
        self.inserted = []
        self.moved = {}          # pid -> its cgroup before
        self.applied_at = self.healed_at = None

    def apply(self):
        self.cluster.cut.add(self.index)
        os.mkdir(self.group)
        for pid in _descendants(self.pid):
            try:
                self.moved[pid] = _own_cgroup(pid)
                with open(os.path.join(self.group, "cgroup.procs"), "w") as f:
                    f.write(str(pid))
            except OSError:
                self.moved.pop(pid, None)  # ended meanwhile
        comment = self.comment
        rules = [("OUTPUT", ["-o", "lo", "-m", "cgroup", "--path", self.tag, *comment,
                             "-j", "DROP"])]
        for port in sorted(set(self.ports) | _local_ports(self.moved)):
            rules.append(("INPUT", ["-i", "lo", "-p", "tcp", "--dport", str(port), *comment,
                                    "-j", "DROP"]))
            rules.append(("OUTPUT", ["-o", "lo", "-p", "tcp", "--sport", str(port), *comment,
                                     "-j", "DROP"]))
        for chain, spec in rules:
            subprocess.run(["iptables", "-w", "-I", chain, "1", *spec], check=True,
                           capture_output=True)
            self.inserted.append((chain, spec))
        self.applied_at = time.monotonic()

    def elapsed(self):
        return time.monotonic() - self.applied_at

    def heal(self):
        while self.inserted:
            chain, spec = self.inserted.pop()
            subprocess.run(["iptables", "-w", "-D", chain, *spec], check=False,
                           capture_output=True)
        for pid, before in self.moved.items():
            try:
                with open(os.path.join(self.root, before.lstrip("/"), "cgroup.procs"), "w") as f:
                    f.write(str(pid))
            except OSError:
                pass  # ended
        self.moved = {}
        if os.path.isdir(self.group):
            # Processes forked inside it meanwhile go back to the root.
            try:
                with open(os.path.join(self.group, "cgroup.procs")) as f:
                    left = [line.strip() for line in f if line.strip()]
                for pid in left:
                    with open(os.path.join(self.root, "cgroup.procs"), "w") as f:
                        f.write(pid)
                os.rmdir(self.group)
            except OSError:
                pass
        self.cluster.cut.discard(self.index)
        if self.applied_at is not None and self.healed_at is None:
            self.healed_at = time.monotonic()

    def since_healed(self):
        return time.monotonic() - self.healed_at
