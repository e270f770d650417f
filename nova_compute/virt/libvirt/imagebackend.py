"""qcow2 overlays on cached base images, through qemu-img (argument lists only)."""
import errno
import json
import os
import shutil
import subprocess
import tempfile

from common import exception

QEMU_IMG = "qemu-img"
QEMU_IMG_TIMEOUT = 60  # seconds; qemu-img on a local file takes well under one
CONVERT_TIMEOUT = 3600  # a whole disk is copied: its size decides
GiB = 1024 ** 3
# qemu-img info parses untrusted image headers: cap its memory and CPU time.
_PRLIMIT = ["prlimit", "--as=%d" % GiB, "--cpu=30", "--"]


def _run(args, limit=False, timeout=QEMU_IMG_TIMEOUT, ok=(0,)):
    cmd = (_PRLIMIT if limit and shutil.which("prlimit") else []) + [QEMU_IMG] + list(args)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except FileNotFoundError:
        raise exception.HypervisorError(reason="%s is not installed" % cmd[0])
    except subprocess.TimeoutExpired:
        raise exception.HypervisorError(
            reason="qemu-img %s did not finish within %d s" % (args[0], timeout))
    if proc.returncode not in ok:
        raise exception.HypervisorError(
            reason="qemu-img %s failed (exit %d): %s"
            % (args[0], proc.returncode, proc.stderr.strip() or proc.stdout.strip()))
    return proc.stdout


def image_info(path, fmt="qcow2"):
    """``qemu-img info --output=json`` of ``path`` read as ``fmt`` (never probed:
    a guessed format lets a raw image pose as qcow2 with a host backing file)."""
    out = _run(["info", "--output=json", "-U", "-f", fmt, path], limit=True)
    try:
        return json.loads(out)
    except ValueError:
        raise exception.HypervisorError(reason="qemu-img info gave no JSON for %s" % path)


def base_virtual_size(base_path):
    """Virtual size in bytes of a qcow2 base; refuses bases with a backing file."""
    info = image_info(base_path)
    if info.get("backing-filename") or info.get("full-backing-filename"):
        raise exception.Invalid(reason="base image %s has a backing file of its own"
                                % base_path)
    return int(info["virtual-size"])


def overlay_size(root_gb, base_size):
    """The flavor's root disk if it is larger than the base, else the base's size."""
    return max(root_gb * GiB, base_size)


def create_overlay(base_path, overlay_path, size_bytes):
    """Create ``overlay_path`` as a qcow2 overlay backed by the absolute base path."""
    if not os.path.isabs(base_path):
        raise exception.Invalid(reason="base image path must be absolute: %s" % base_path)
    _run(["create", "-f", "qcow2", "-F", "qcow2", "-b", base_path,
          overlay_path, str(int(size_bytes))])


def convert_to_standalone(path, target_path):
    """Write the qcow2 ``path`` with its backing chain merged in as one
    qcow2 image without backing file at ``target_path``. The image must not
    be written meanwhile (its domain shut off)."""
    _run(["convert", "-f", "qcow2", "-O", "qcow2", path, target_path],
         timeout=CONVERT_TIMEOUT)


def rebase_unsafe(path, base_path):
    """Point the overlay ``path`` at ``base_path`` without touching its data:
    for a copy of an overlay whose base has the same content here (the same
    image, cached at another path)."""
    if not os.path.isabs(base_path):
        raise exception.Invalid(reason="base image path must be absolute: %s" % base_path)
    _run(["rebase", "-u", "-f", "qcow2", "-F", "qcow2", "-b", base_path, path])


def check(path, virtual_size):
    """Refuse (HypervisorError) a qcow2 at ``path`` that ``qemu-img check``
    finds corrupt or that is not of ``virtual_size`` bytes. Leaked clusters
    (exit 3: a guest powered off hard) only waste space."""
    _run(["check", "-f", "qcow2", path], limit=True, timeout=CONVERT_TIMEOUT, ok=(0, 3))
    got = int(image_info(path)["virtual-size"])
    if got != virtual_size:
        raise exception.HypervisorError(reason="%s is a disk of %d bytes, not %d"
                                        % (path, got, virtual_size))


def grow(path, size_bytes):
    """Grow the qcow2 ``path`` to ``size_bytes`` (never shrinks: Invalid)."""
    current = int(image_info(path)["virtual-size"])
    if size_bytes < current:
        raise exception.Invalid(reason="a disk of %d bytes cannot shrink to %d"
                                % (current, size_bytes))
    if size_bytes > current:
        _run(["resize", "-f", "qcow2", path, str(int(size_bytes))])


def supports_direct_io(dirpath):
    """True when files in ``dirpath`` can be opened O_DIRECT (cache='none' needs
    it; tmpfs for example cannot)."""
    if not hasattr(os, "O_DIRECT"):
        return False
    fd, probe = tempfile.mkstemp(dir=dirpath, prefix=".directio.")
    os.close(fd)
    try:
        fd = os.open(probe, os.O_RDWR | os.O_DIRECT)
        os.close(fd)
        return True
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            return False
        raise
    finally:
        os.unlink(probe)
