"""Snapshots of VMs (Nova's createImage), the API's part: the new image and
the VM's move to ``image_snapshot`` in one transaction, then a cast to the
VM's host (nova_compute/snapshotter.py does the rest).

The image is created at once, ``queued`` (no data yet), private to the VM's
project, in qcow2, with the source recorded in its properties as Nova does
(``instance_uuid``, ``image_type=snapshot``, ``base_image_ref``,
``user_id``) beside the caller's metadata; min_ram and min_disk are what the
VM's image and flavor need. The compute host uploads its data (queued ->
saving -> active) or deletes it when the snapshot fails: the image is usable
or absent."""
import logging
import uuid

from common import context, exception, states
from common.db import api as db_api
from common.db import images as db_images
from common.db.models import Image
from common.timeline import DbSink, Timeline
from nova_api.openstack.image import schemas as image_schemas

LOG = logging.getLogger(__name__)
_ALL = context.RequestContext(is_admin=True)  # the rotation sees every backup of the VM

ACTION = "createImage"  # the instance actions' names, as in Nova
BACKUP_ACTION = "createBackup"


def _rotated_out(s, instance_id, backup_type, rotation):
    """Ids of the VM's active backups of ``backup_type`` that a new one
    pushes out of a rotation of ``rotation``, oldest first."""
    backups = [i for i in db_images.query(s, _ALL, conditions=(Image.status == "active",),
                                          properties={"instance_uuid": instance_id,
                                                      "image_type": "backup",
                                                      "backup_type": backup_type})]
    backups.sort(key=lambda i: (i.created_at, i.id))
    return [i.id for i in backups[:max(0, len(backups) + 1 - rotation)]]


def image_properties(inst, metadata, user_id):
    """The new image's extra properties, as Nova's: the source's
    (``image_type`` snapshot, ``base_image_ref``, ``user_id``), then the
    caller's ``metadata`` over them (checked as Glance checks properties),
    and ``instance_uuid`` always the VM's (what the host's rights and the
    clean-up go by)."""
    properties = {"image_type": "snapshot", "base_image_ref": inst.image_id or "",
                  "user_id": user_id or ""}
    for key, value in (metadata or {}).items():
        if (key in image_schemas.CORE or key in image_schemas.READ_ONLY
                or key in image_schemas.RESERVED
                or key.startswith(image_schemas.RESERVED_PREFIX)):
            raise exception.ValidationError(field="metadata.%s" % key[:255],
                                            reason="is an image attribute, not a property")
        image_schemas.check_property(key, value)
        properties[key] = value
    properties["instance_uuid"] = inst.id
    image_schemas.check_quotas(properties, ())
    return properties


class SnapshotService:
    def __init__(self, db, compute_rpcapi, host="api"):
        self.db = db
        self.host = host
        self.compute_rpcapi = compute_rpcapi
        self.timeline = Timeline(DbSink(db), host)

    def snapshot(self, ctxt, ref, name, metadata=None):
        """Capture VM ``ref`` as a new image named ``name``; the image row
        (queued). 409 naming the state when the VM cannot be snapshotted now
        (a task in progress, its state, its lock); nothing is created then."""
        return self._capture(ctxt, ref, name, metadata, None)

    def backup(self, ctxt, ref, name, backup_type, rotation, metadata=None):
        """A snapshot kept as a backup (Nova's createBackup): an image of
        type backup and ``backup_type``; once it is active, its host deletes
        the oldest of the VM's active backups of that type so that
        ``rotation`` remain (chosen here, under the VM's guard: no other
        backup of the VM runs meanwhile)."""
        return self._capture(ctxt, ref, name, metadata, (backup_type, rotation))

    def _capture(self, ctxt, ref, name, metadata, backup):
        kind = "snapshot" if backup is None else "backup"
        allowed, task = states.ACTION_GUARDS[kind]
        with self.db.transaction() as s:
            inst = db_api.instance_get_by_ref(s, ctxt.project_id, ref)
            properties = image_properties(inst, metadata, ctxt.user_id)
            if backup is not None:
                properties.update(image_type="backup", backup_type=backup[0])
            moved = inst.host is not None and db_api.instance_update_if(
                s, inst.id, {"task_state": task, "fault": None},
                expected_task_state=None, expected_vm_state=tuple(allowed),
                **({} if ctxt.is_admin else {"expected_locked": False}))
            if not moved:
                s.refresh(inst)
                _refuse(ctxt, inst, kind)
            rotate_out = (_rotated_out(s, inst.id, backup[0], backup[1])
                          if backup is not None else None)
            base = s.get(Image, inst.image_id) if inst.image_id else None
            image = db_images.create(s, {
                "id": str(uuid.uuid4()), "name": name, "disk_format": "qcow2",
                "container_format": "bare", "visibility": "private", "owner": inst.project_id,
                "min_ram": base.min_ram if base is not None else 0,
                "min_disk": inst.root_gb, "status": "queued"}, properties, ())
        LOG.info("VM %s: %s to image %s accepted", inst.id, kind, image.id)
        self.timeline.start_action(ctxt, inst.id, ACTION if backup is None else BACKUP_ACTION)
        try:
            if backup is None:
                self.compute_rpcapi.snapshot_instance(ctxt, inst.host, inst.id, image.id)
            else:
                self.compute_rpcapi.backup_instance(ctxt, inst.host, inst.id, image.id,
                                                    rotate_out)
        except (exception.ServiceUnavailable, exception.RPCVersionCapError) as e:
            self._undo(inst.id, image.id, task)
            self.timeline.finish(ctxt, inst.id, "error", e.message)
            if isinstance(e, exception.RPCVersionCapError):
                raise exception.Conflict(reason="the compute hosts are not all upgraded to "
                                         "take a %s yet" % kind) from e
            raise
        self.timeline.record(ctxt, inst.id, "accepted",
                             details="image %s; cast to compute.%s" % (image.id, inst.host))
        return image

    def _undo(self, instance_id, image_id, task):
        """Nothing will carry the snapshot out: the task and the image go."""
        with self.db.transaction() as s:
            db_api.instance_update_if(s, instance_id, {"task_state": None},
                                      expected_task_state=task)
            image = s.get(Image, image_id)
            if image is not None and image.deleted_at is None:
                db_images.delete(s, image)


def _refuse(ctxt, inst, kind="snapshot"):
    if inst.locked and not ctxt.is_admin:
        raise exception.InstanceLocked(instance=inst.name, action=kind)
    if inst.host is None:
        why = "before it is on a host (status %s)" % states.status(inst.vm_state,
                                                                    inst.task_state)
    elif inst.task_state:
        why = "while task %s is in progress" % inst.task_state
    else:
        why = "while it is %s" % states.status(inst.vm_state, inst.task_state)
    raise exception.Conflict(reason="cannot %s VM %s %s" % (kind, inst.name, why))
