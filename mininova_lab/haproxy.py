"""HAProxy in front of several API processes, for tests: its configuration
from deploy/haproxy-cfg.sh (the deploy scripts' own), its process in the
foreground (``-db``, a child this test can kill), and what it thinks of each
API read from its stats socket."""
import csv
import io
import os
import socket
import subprocess

from mininova_lab.waiting import wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CFG_SCRIPT = os.path.join(ROOT, "deploy", "haproxy-cfg.sh")
HAPROXY = "/usr/sbin/haproxy"


class HAProxy:
    def __init__(self, workdir, port, backends):
        """``backends``: {name: "host:port"} of the APIs."""
        self.workdir = str(workdir)
        self.port = port
        self.url = "http://127.0.0.1:%d" % port
        self.backends = dict(backends)
        self.socket = os.path.join(self.workdir, "haproxy.sock")
        self.cfg = os.path.join(self.workdir, "haproxy.cfg")
        self.proc = None

    def start(self):
        os.makedirs(self.workdir, exist_ok=True)
        text = subprocess.run(
            ["bash", CFG_SCRIPT, "--bind", "127.0.0.1:%d" % self.port, "--stats-socket",
             self.socket, *("%s=%s" % kv for kv in self.backends.items())],
            check=True, capture_output=True, text=True).stdout
        with open(self.cfg, "w") as f:
            f.write(text)
        log = open(os.path.join(self.workdir, "haproxy.out"), "ab")
        self.proc = subprocess.Popen([HAPROXY, "-db", "-f", self.cfg], stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_for(lambda: self.states() == dict.fromkeys(self.backends, "UP"), 30,
                 what="HAProxy to see every API up")
        return self

    def _command(self, line):
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(self.socket)
            s.sendall(line.encode() + b"\n")
            chunks = []
            while True:
                data = s.recv(65536)
                if not data:
                    return b"".join(chunks).decode()
                chunks.append(data)

    def states(self):
        """{server name: "UP", "DOWN", "UP 1/2", ...} as HAProxy sees them."""
        try:
            text = self._command("show stat")
        except OSError:
            return {}
        rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
        return {r["svname"]: r["status"] for r in rows
                if r["pxname"] == "mininova-api" and r["svname"] in self.backends}

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            self.proc = None
