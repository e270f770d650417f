"""Checks of the compute host itself: qemu.conf, virtlogd, the instance and
image-cache directories. No libvirt here (see libvirt_checks)."""
import errno
import os
import socket
import tempfile

from nova_manage.doctor import fail, ok, userprobe, warn

QEMU_CONF = "/etc/libvirt/qemu.conf"
VIRTLOGD_SOCKET = "/run/libvirt/virtlogd-sock"
# What libvirt does when qemu.conf leaves a key out (Debian's build).
QEMU_DEFAULTS = {"user": "libvirt-qemu", "group": "kvm", "dynamic_ownership": 1}
WANTED = 'user = "root", group = "root", dynamic_ownership = 0, security_driver = "none"'
RESTART = "restart libvirtd (it reads qemu.conf only at start)"
LSM_MARKERS = {"apparmor": "/sys/kernel/security/apparmor", "selinux": "/sys/fs/selinux/enforce"}
GB = 1024 ** 3


# -- qemu.conf ---------------------------------------------------------------

def parse_qemu_conf(text):
    """``key = value`` lines -> dict; quoted strings unquoted, integers as int,
    anything else (lists) kept as text. Comments and blank lines skipped."""
    settings = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        elif value.lstrip("-").isdigit():
            value = int(value)
        settings[key.strip()] = value
    return settings


def check_qemu_conf(path, compute_user, dirs, lsm_markers=LSM_MARKERS):
    """QEMU must be able to use the overlays compute creates in the instances
    dir and the base images in the image cache, and libvirt must leave their
    ownership alone. ``dirs``: {label: path}."""
    name = "qemu.conf"
    fix_all = "in %s set %s (deploy/install-host.sh does), then %s" % (path, WANTED, RESTART)
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            settings = parse_qemu_conf(f.read())
    except OSError as exc:
        return [fail(name, "cannot read %s: %s (is libvirt-daemon-system installed?)"
                     % (path, exc.strerror), "deploy/install-host.sh")]
    user = str(settings.get("user", QEMU_DEFAULTS["user"]))
    group = str(settings.get("group", QEMU_DEFAULTS["group"]))
    dynamic = settings.get("dynamic_ownership", QEMU_DEFAULTS["dynamic_ownership"])
    security = settings.get("security_driver")
    results = []
    if user not in ("root", "0"):
        results += _qemu_user_access(name, user, group, compute_user, dynamic, dirs, fix_all)
    if dynamic != 0:
        results.append(fail(name, "dynamic_ownership = %s in %s: libvirt chowns every disk "
                            "(and the base images the overlays share in the image cache) to "
                            "the QEMU user at each VM start and back at each stop, under the "
                            "other VMs using them" % (dynamic, path), fix_all))
    if security is not None and security != "none":
        results.append(fail(name, 'security_driver = "%s" in %s: QEMU is confined to files '
                            "libvirt labels itself; the shared base images and overlays under "
                            "mininova's dirs are not" % (security, path), fix_all))
    elif security is None:
        active = [lsm for lsm, marker in lsm_markers.items() if os.path.exists(marker)]
        if active:
            results.append(warn(name, "security_driver is not set in %s: libvirt confines "
                                "QEMU with %s here" % (path, active[0]), fix_all))
    if not results:
        results.append(ok(name, "QEMU runs as %s:%s, dynamic_ownership = %s, security_driver "
                          "= %s" % (user, group, dynamic, security or "none (no LSM)")))
    return results


def _qemu_user_access(name, user, group, compute_user, dynamic, dirs, fix_all):
    try:
        userprobe.user_ids(user, group)
    except KeyError:
        return [fail(name, "QEMU user %s:%s (qemu.conf) does not exist" % (user, group), fix_all)]
    results = []
    for label, path in dirs.items():
        existing = _existing_ancestor(path)
        need = os.R_OK | os.W_OK | os.X_OK if label == "instances" else os.R_OK | os.X_OK
        try:
            allowed = userprobe.run_as(user, os.access, existing, need, group=group)
        except userprobe.ProbeError as exc:
            results.append(warn(name, "could not check %s as QEMU user %s: %s"
                                % (existing, user, exc)))
            continue
        if not allowed:
            results.append(fail(name, "QEMU runs as %s:%s (qemu.conf user/group) and cannot %s "
                                "%s (%s dir)" % (user, group, "write" if need & os.W_OK
                                                 else "read", existing, label),
                                fix_all + "; or chown -R %s:%s %s" % (user, group, existing)))
    if dynamic == 0 and user != compute_user:
        results.append(fail(name, "QEMU runs as %s but compute as %s with dynamic_ownership = "
                            "0: the overlays compute creates are not writable by QEMU"
                            % (user, compute_user), fix_all))
    return results


# -- virtlogd ----------------------------------------------------------------

def check_virtlogd(socket_path=VIRTLOGD_SOCKET, proc_root="/proc"):
    """QEMU's console and log output go through virtlogd: without it every
    domain fails to start."""
    name = "virtlogd"
    fix = "virtlogd -d  (deploy/start-libvirt.sh starts it)"
    running = _process_running("virtlogd", proc_root)
    if not os.path.exists(socket_path):
        if running:
            return [fail(name, "a virtlogd process runs but its socket %s is missing"
                         % socket_path, "kill that virtlogd, then " + fix)]
        return [fail(name, "virtlogd is not running (no process, no %s): every domain "
                     "start fails with 'Failed to connect socket to %s'"
                     % (socket_path, socket_path), fix)]
    error = _unix_connect_error(socket_path)
    if error is not None:
        return [fail(name, "cannot connect to %s: %s%s" % (
            socket_path, error, " (a stale socket: no virtlogd process)" if not running else ""),
            "rm -f %s && %s" % (socket_path, fix) if not running else fix)]
    if not running:
        return [warn(name, "%s answers but no virtlogd process is visible in %s"
                     % (socket_path, proc_root))]
    return [ok(name, "running, %s answers" % socket_path)]


def _process_running(comm, proc_root):
    try:
        pids = [p for p in os.listdir(proc_root) if p.isdigit()]
    except OSError:
        return False
    for pid in pids:
        try:
            with open(os.path.join(proc_root, pid, "comm")) as f:
                name = f.read().strip()
            if name == comm or name.startswith(comm + "-"):  # virtlogd-lab: deploy/lab
                return True
        except OSError:
            continue  # gone meanwhile
    return False


def _unix_connect_error(path, timeout=2.0):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(path)
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


# -- directories -------------------------------------------------------------

def check_dir(label, option, path, user, min_free_gb):
    """``path`` writable by compute's ``user`` (a temp file is created and
    removed, as that user) with at least ``min_free_gb`` free."""
    name = "dirs"
    existing = _existing_ancestor(path)
    note = "" if existing == path else " (not created yet; made under %s at first use)" % existing
    try:
        error = userprobe.run_as(user, _write_probe, existing)
    except (userprobe.ProbeError, KeyError) as exc:
        return [fail(name, "cannot check %s as user %s: %s" % (existing, user, exc),
                     "create the user, or run the doctor with --compute-user USER")]
    if error and existing != path:
        return [fail(name, "%s dir %s (%s) does not exist and user %s cannot "
                     "create it: %s in %s" % (label, path, option, user, error, existing),
                     "mkdir -p %s && chown %s %s" % (path, user, path))]
    if error:
        return [fail(name, "%s dir %s (%s) is not writable by user %s: %s"
                     % (label, path, option, user, error),
                     "chown -R %s %s  (or point %s at a dir %s owns)"
                     % (user, path, option, user))]
    stat = os.statvfs(existing)
    free = stat.f_bavail * stat.f_frsize
    if free < min_free_gb * GB:
        return [fail(name, "%s dir %s has %.1f GB free, below the %.1f GB threshold"
                     % (label, existing, free / GB, min_free_gb),
                     "free space on that filesystem, or point %s at a larger one "
                     "(threshold: --min-free-gb)" % option)]
    return [ok(name, "%s dir %s writable by %s, %.1f GB free%s"
               % (label, path, user, free / GB, note))]


def _write_probe(path):
    """None, or why a file cannot be created in ``path``."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".doctor-", dir=path)
    except OSError as exc:
        return exc.strerror or errno.errorcode.get(exc.errno, str(exc))
    os.close(fd)
    os.unlink(tmp)
    return None


def _existing_ancestor(path):
    path = os.path.abspath(path)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path
