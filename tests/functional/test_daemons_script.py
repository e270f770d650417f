"""deploy/daemons.sh (what `make run`, `make stop` and `make status` use)
on a real stack of three daemons: a daemon that was killed is started again
by the next `start`, at once, even while its process is still a zombie."""
import os
import signal
import sys

import pytest

from mininova_lab.stack import ROOT, Stack
from tests.functional.subreaper import Subreaper
from mininova_lab.waiting import wait_for

pytestmark = pytest.mark.real_services("rabbitmq", "postgresql", "http")

DAEMONS = os.path.join(ROOT, "deploy", "daemons.sh")
WAIT_SERVICE = os.path.join(ROOT, "deploy", "wait-service.py")
VENV = os.path.dirname(os.path.dirname(sys.executable))


def proc_state(pid):
    """The process's state letter (Z: zombie), None when it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def parent(pid):
    with open("/proc/%d/status" % pid) as f:
        return int(next(line.split()[1] for line in f if line.startswith("PPid:")))


def cmdline(pid):
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        return f.read().replace(b"\0", b" ").decode()


@pytest.fixture
def stack(tmp_path):
    """A configured stack (database, vhost, config, accounts) whose daemons
    daemons.sh starts, run by a subreaper: the daemons become its children."""
    s = Stack(tmp_path / "state", compute_driver="fake", network="")
    s.configure()
    # The checkout's code, whatever the venv's mininova is installed from.
    env = dict(os.environ, PYTHONPATH=ROOT)
    s.reaper = Subreaper(env=env, cwd=ROOT)
    try:
        yield s
    finally:
        s.reaper.run("bash", DAEMONS, "stop", s.workdir, VENV)
        s.reaper.close()
        s.stop()


def daemons(stack, action):
    rc, out, err = stack.reaper.run("bash", DAEMONS, action, stack.workdir, VENV)
    assert rc == 0, "daemons.sh %s: %d\n%s%s" % (action, rc, out, err)
    return out


def pid_of(stack, name):
    with open(os.path.join(stack.workdir, "run", name + ".pid")) as f:
        return int(f.read())


def test_a_killed_daemon_is_started_again_at_once(stack):
    out = daemons(stack, "start")
    assert all("mininova-%s started" % d in out
               for d in ("api", "scheduler", "conductor", "compute")), out
    wait_for(stack._api_up, 60, what="the API")
    wait_for(stack._compute_up, 60, what="compute's heartbeat")
    old = pid_of(stack, "compute")
    assert parent(old) == stack.reaper.pid  # adopted: nobody but the subreaper reaps it

    os.kill(old, signal.SIGKILL)
    wait_for(lambda: proc_state(old) == "Z", 30, what="compute to be a zombie")
    out = daemons(stack, "status")
    assert "mininova-compute stopped" in out and "mininova-api running" in out, out

    out = daemons(stack, "start")  # no pause: the zombie is still there
    assert proc_state(old) == "Z"
    assert "mininova-compute started" in out, out
    assert "mininova-api already running" in out and "mininova-scheduler already running" in out
    new = pid_of(stack, "compute")
    assert new != old and proc_state(new) not in (None, "Z")
    assert "mininova-compute --config-file %s/mininova.conf " % os.path.realpath(stack.workdir) \
        in cmdline(new)
    # The new process reports in (the killed one's last heartbeat is still
    # recent: only a newer one counts).
    rc, out, err = stack.reaper.run(
        sys.executable, WAIT_SERVICE, "--api", stack.url, "--binary", "mininova-compute",
        "--host", stack.host, "--token", stack.http.headers["X-Auth-Token"],
        "--timeout", "60", "--new-heartbeat")
    assert rc == 0, err

    out = daemons(stack, "start")
    assert out.count("already running") == 4, out
    pids = [pid_of(stack, d) for d in ("api", "scheduler", "conductor", "compute")]
    daemons(stack, "stop")
    assert all(proc_state(pid) in (None, "Z") for pid in pids)
    assert not os.listdir(os.path.join(stack.workdir, "run"))
    assert daemons(stack, "status").count("stopped") == 4
