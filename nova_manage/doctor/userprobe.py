"""Run a small probe as another user: what compute's or QEMU's user can do is
what matters, not what root running the doctor can.

The probe runs in a forked child that drops to the user's uid, gid and
supplementary groups (as ``runuser`` would) and sends its JSON result back
through a pipe. A fork rather than ``runuser python``: the child keeps the
modules already imported, so the user needs no access to this venv or its
interpreter (which may live under /root).
"""
import grp
import json
import os
import pwd
import select
import signal
import time

from common import exception


class ProbeError(Exception):
    pass


def user_ids(user, group=None):
    """(uid, gid, groups) of ``user`` (name or numeric), with ``group``
    (name) as primary group instead of the user's own when given. Raises
    KeyError for an unknown user or group."""
    entry = pwd.getpwuid(int(user)) if str(user).isdigit() else pwd.getpwnam(user)
    gid = grp.getgrnam(group).gr_gid if group else entry.pw_gid
    return entry.pw_uid, gid, os.getgrouplist(entry.pw_name, gid)


def current_user():
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def process_user(markers, proc_root="/proc"):
    """The user name of a running process whose command line contains one of
    ``markers`` (e.g. a running mininova-compute), or None."""
    for pid in (p for p in os.listdir(proc_root) if p.isdigit()):
        try:
            with open(os.path.join(proc_root, pid, "cmdline"), "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
            if pid != str(os.getpid()) and any(m in cmdline for m in markers):
                uid = os.stat(os.path.join(proc_root, pid)).st_uid
                try:
                    return pwd.getpwuid(uid).pw_name
                except KeyError:
                    return str(uid)
        except OSError:
            continue  # gone meanwhile
    return None


def run_as(user, fn, *args, group=None, timeout=15.0):
    """``fn(*args)`` as ``user`` (in this process when it is the current
    user); its result must be JSON-serialisable. Exceptions in ``fn`` come
    back as ProbeError."""
    uid, gid, groups = user_ids(user, group)
    if uid == os.geteuid() and gid == os.getegid():
        return fn(*args)
    if os.geteuid() != 0:
        raise ProbeError("only root can probe as user %s" % user)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns
        code = 0
        try:
            os.close(read_fd)
            os.setgroups(groups)
            os.setgid(gid)
            os.setuid(uid)
            home = pwd.getpwuid(uid).pw_dir
            os.environ.update(HOME=home, USER=str(user), LOGNAME=str(user))
            try:
                payload = {"result": fn(*args)}
            except Exception as exc:
                payload = {"error": exception.describe(exc)}
            os.write(write_fd, json.dumps(payload).encode())
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write_fd)
    try:
        data = _read_all(read_fd, pid, timeout, user)
    finally:
        os.close(read_fd)
        os.waitpid(pid, 0)
    if not data:
        raise ProbeError("the probe as user %s died without an answer" % user)
    payload = json.loads(data)
    if "error" in payload:
        raise ProbeError(payload["error"])
    return payload["result"]


def _read_all(fd, pid, timeout, user):
    deadline = time.monotonic() + timeout
    chunks = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            os.kill(pid, signal.SIGKILL)
            raise ProbeError("the probe as user %s took more than %.0f s" % (user, timeout))
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
