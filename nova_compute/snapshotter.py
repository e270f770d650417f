"""Capturing a VM of this host as a new image (Nova's snapshot).

The API has created the image (``queued``, owned by the VM's project, its
source VM recorded) and moved the VM to ``image_snapshot``. Here, as a power
task (PowerTasks.run: under the VM's lock, only while the VM is this host's
and still ``image_snapshot``, or ``image_backup`` for a backup; reported with
instance_task_done/failed, which
leave the VM in the state its power shows):

1. the driver writes the VM's disk as one flattened qcow2 to a temp file
   under [compute] snapshots_path (consistent: the libvirt driver saves a
   running guest to disk meanwhile and restores it);
2. unless a delete overtook the snapshot meanwhile, the file is uploaded as
   the image's data (the store sums it; queued -> saving -> active);
3. the temp file is removed in every case.

A backup (Nova's createBackup) is a snapshot whose image is of type backup;
once it is active, the older backups the API chose for the rotation are
deleted (after, never before: a failed backup drops none).

Truth under failure: the image is usable (active, with the data) or absent.
Any failure, and a delete of the VM before the upload, discards the image;
a snapshot request that finds the VM no longer this host's or no longer in
``image_snapshot`` discards it too."""
import logging
import os

from common import exception, states

LOG = logging.getLogger(__name__)


def snapshots_dir(conf):
    """[compute] snapshots_path, or ``snapshots`` beside instances_path."""
    path = conf.compute.snapshots_path
    if not path:
        instances = os.path.abspath(conf.compute.instances_path).rstrip("/")
        path = os.path.join(os.path.dirname(instances), "snapshots")
    return os.path.abspath(path)


class Snapshotter:
    def __init__(self, driver, power_tasks, uploader, timeline, conf):
        """``power_tasks``: the PowerTasks that run the task (its lock,
        checks and reports); ``uploader``: an image_upload.ImageUploader."""
        self.driver = driver
        self.power_tasks = power_tasks
        self.uploader = uploader
        self.timeline = timeline
        self.conf = conf

    def snapshot(self, ctxt, instance_id, image_id, rotate_out=None):
        """``rotate_out``: a backup (task ``image_backup``), after which these
        older backups are deleted (the rotation); None: a snapshot."""
        outcome = {}
        task = states.IMAGE_SNAPSHOT if rotate_out is None else states.IMAGE_BACKUP
        try:
            self.power_tasks.run(ctxt, instance_id, task,
                                 lambda cancel: self._snapshot(ctxt, instance_id, image_id,
                                                               cancel, outcome, rotate_out))
        finally:
            if "uploaded" not in outcome and "discarded" not in outcome:
                # Skipped (a delete or another task overtook it) or interrupted.
                LOG.info("VM %s: snapshot to image %s not taken; discarding the image",
                         instance_id, image_id)
                self.uploader.discard(image_id)

    def _snapshot(self, ctxt, instance_id, image_id, cancel, outcome, rotate_out):
        """Under the VM's lock, the VM ``image_snapshot`` on this host."""
        directory = snapshots_dir(self.conf)
        path = os.path.join(directory, "%s.qcow2" % image_id)
        try:
            os.makedirs(directory, exist_ok=True)
            with self.timeline.step(ctxt, instance_id, "snapshot disk") as step:
                info = self.driver.snapshot(instance_id, path)
                step.details = "%d bytes (virtual %d)" % (info["size"], info["virtual_size"])
            if cancel.is_set():  # a delete is waiting for the lock
                raise exception.SnapshotFailed(instance=instance_id,
                                               reason="the VM is being deleted")
            with self.timeline.step(ctxt, instance_id, "snapshot upload") as step:
                stored = self.uploader.upload(image_id, path)
                step.details = "image %s active, md5 %s" % (image_id, stored["md5"])
            outcome["uploaded"] = True
            LOG.info("VM %s: snapshot uploaded as image %s (%d bytes)", instance_id, image_id,
                     info["size"])
        except BaseException:
            # Before the failure is reported: once the VM is back at rest,
            # its failed snapshot is already gone.
            outcome["discarded"] = self.uploader.discard(image_id)
            raise
        finally:
            _remove(path)
        if rotate_out:
            self._rotate(ctxt, instance_id, rotate_out)

    def _rotate(self, ctxt, instance_id, image_ids):
        """The older backups the rotation drops, once the new one is active
        (a failed backup deletes none). One that cannot be deleted stays,
        noted in the timeline; the backup itself succeeded."""
        with self.timeline.step(ctxt, instance_id, "backup rotation") as step:
            kept = [i for i in image_ids if not self.uploader.discard(i)]
            step.details = "%d deleted%s" % (len(image_ids) - len(kept), "; kept (could not "
                                             "delete) %s" % ", ".join(kept) if kept else "")


def _remove(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
