"""Where a VM's files live on this host, and moving them around.

``<instances_path>/<id>/`` holds its disk (a qcow2 overlay on a cached base),
its config drive (disk.config, Nova's name) and its console log; ``<id>_resize/`` is that directory set aside on the
source of a resize or cold migration, kept for a revert until the move is
confirmed. Only canonical UUIDs become paths (no '/', no '..')."""
import os
import shutil

from nova_compute.virt import driver

SET_ASIDE_SUFFIX = "_resize"


class InstanceFiles:
    def __init__(self, instances_path):
        self.instances_path = os.path.abspath(instances_path)

    def dir(self, instance_id):
        return os.path.join(self.instances_path, driver.validate_instance_id(instance_id))

    def disk(self, instance_id):
        return os.path.join(self.dir(instance_id), "disk")

    def config_drive(self, instance_id):
        return os.path.join(self.dir(instance_id), "disk.config")

    def console_log(self, instance_id):
        return os.path.join(self.dir(instance_id), "console.log")

    def set_aside_dir(self, instance_id):
        return self.dir(instance_id) + SET_ASIDE_SUFFIX

    def has_disk(self, instance_id):
        return os.path.isfile(self.disk(instance_id))

    def fresh_dir(self, instance_id):
        """An empty instance directory (what was there is removed), for the
        owner only (QEMU runs as root): the guest's disk is in it."""
        path = self.dir(instance_id)
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path, mode=0o700)
        return path

    def remove(self, instance_id, set_aside_too=True):
        """Post: no instance directory (and no set-aside one)."""
        paths = [self.dir(instance_id)]
        if set_aside_too:
            paths.append(self.set_aside_dir(instance_id))
        for path in paths:
            try:
                shutil.rmtree(path)
            except FileNotFoundError:
                pass

    def set_aside(self, instance_id):
        """Rename the instance directory to the set-aside one, once: a
        set-aside directory already there is the one to keep (a repeated
        call, or the destination's new directory on the same host)."""
        if not os.path.isdir(self.set_aside_dir(instance_id)):
            os.rename(self.dir(instance_id), self.set_aside_dir(instance_id))
        return self.set_aside_dir(instance_id)

    def take_back(self, instance_id):
        """The set-aside directory becomes the instance directory again
        (replacing what is there). False when nothing was set aside."""
        if not os.path.isdir(self.set_aside_dir(instance_id)):
            return False
        shutil.rmtree(self.dir(instance_id), ignore_errors=True)
        os.rename(self.set_aside_dir(instance_id), self.dir(instance_id))
        return True


def tail_lines(path, lines, max_bytes=1024 * 1024):
    """The last ``lines`` lines of a text file (reading at most max_bytes)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except FileNotFoundError:
        return ""
    kept = data.decode("utf-8", errors="replace").splitlines()[-lines:]
    return "".join(line + "\n" for line in kept)
