"""The compute side of ``mininova-manage audit``.

``report``: what this host has (domains it owns, UUID-named instance
directories, cached images), read-only. ``fix``: destroy the domains and
directories the audit found orphaned, each only after re-checking with the
conductor, under the VM's lock (the lock builds, deletes and the reconcile
loop take too), that the VM has nothing to do with this host now: a VM
scheduled here, or moving from or to here, since the audit looked is left
alone, and a build that waits for the lock starts from a clean slate."""
import logging
import os
import uuid

from common import exception
from nova_compute import ownership
from nova_compute.virt import driver as virt_driver

LOG = logging.getLogger(__name__)


def instance_dirs(path):
    """Names of the sub-directories of ``path`` that are canonical UUIDs."""
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return []
    result = []
    for name in names:
        try:
            canonical = str(uuid.UUID(name))
        except ValueError:
            continue
        if canonical == name and os.path.isdir(os.path.join(path, name)):
            result.append(name)
    return sorted(result)


def cached_images(path):
    """Image ids cached in ``path`` (temp and lock files start with a dot)."""
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return []
    return sorted(n for n in names
                  if not n.startswith(".") and os.path.isfile(os.path.join(path, n)))


class AuditResponder:
    def __init__(self, driver, conductor, image_cache, locks, addresses, conf):
        """``conductor``: the plain conductor client, not a retrying one: a
        fix without an answer destroys nothing and says so at once."""
        self.driver = driver
        self.conductor = conductor
        self.image_cache = image_cache
        self.locks = locks
        self.addresses = addresses
        self.conf = conf
        self.host = conf.host

    def report(self):
        domains = [{"id": d["id"], "power_state": d["power_state"]}
                   for d in self.driver.list_instances()]
        return {"host": self.host, "domains": domains,
                "dirs": instance_dirs(os.path.abspath(self.conf.compute.instances_path)),
                "images": cached_images(self.image_cache.cache_dir)}

    def fix(self, ctxt, instance_ids):
        """{id: "destroyed" | "skipped:<why>" | "failed:<why>"} for each id."""
        return {instance_id: self._fix_one(ctxt, instance_id) for instance_id in instance_ids}

    def _fix_one(self, ctxt, instance_id):
        try:
            virt_driver.validate_instance_id(instance_id)
        except exception.Invalid as e:
            return "failed:%s" % e.message
        with self.locks.lock(instance_id):
            try:
                row = self.conductor.instance_get(ctxt, instance_id)
            except Exception as e:  # no answer: no certainty, no destroy
                return "failed:could not re-check with the conductor: %s" % exception.describe(e)
            relation = ownership.relation(row, self.host)
            if relation == ownership.OWNER:
                return "skipped:a live row puts it on this host now (%s/%s)" % (
                    row["vm_state"], row["task_state"])
            if relation == ownership.IN_TRANSIT:
                return "skipped:it is moving from or to this host now (%s)" % (
                    ownership.describe(row))
            try:
                self.driver.destroy(instance_id)
                self.driver.unplug_fixed_ip(instance_id)
            except exception.MininovaException as e:
                return "failed:%s" % e.message
        self.addresses.forget(instance_id)
        LOG.warning("VM %s: orphan domain/directory destroyed by audit (row: %s)",
                    instance_id, "none" if row is None else "on %s" % row["host"])
        return "destroyed"
