"""Runs commands as a child subreaper (prctl PR_SET_CHILD_SUBREAPER), for
tests of scripts that start daemons in the background.

A daemon that a script detaches (``setsid ... &``) becomes this process's
child once the script exits, and this process never reaps it: a daemon
killed with SIGKILL stays a zombie until this process ends, as it does for a
second or more under an init that reaps slowly, but every time.

Reads one JSON argv per line on stdin, runs it, writes one JSON line
``{"rc", "stdout", "stderr"}`` per command; ends at EOF. ``Subreaper`` drives it.
"""
import ctypes
import json
import os
import subprocess
import sys

PR_SET_CHILD_SUBREAPER = 36


class Subreaper:
    def __init__(self, env=None, cwd=None):
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__)], env=env,
                                     cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
        self.pid = self.proc.pid

    def run(self, *argv):
        """(rc, stdout, stderr) of ``argv`` run by the subreaper."""
        self.proc.stdin.write(json.dumps(argv) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the subreaper died (rc %s)" % self.proc.poll())
        result = json.loads(line)
        return result["rc"], result["stdout"], result["stderr"]

    def close(self):
        """End it; what it adopted goes to init, which reaps the zombies."""
        self.proc.stdin.close()
        self.proc.wait(30)
        self.proc.stdout.close()


def main():
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        sys.exit("prctl(PR_SET_CHILD_SUBREAPER): errno %d" % ctypes.get_errno())
    for line in sys.stdin:
        proc = subprocess.run(json.loads(line), capture_output=True, text=True,
                              stdin=subprocess.DEVNULL)
        print(json.dumps({"rc": proc.returncode, "stdout": proc.stdout,
                          "stderr": proc.stderr}), flush=True)


if __name__ == "__main__":
    main()
