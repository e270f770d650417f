"""A VM's metadata through the API: read, replace, merge, set and delete
keys, each write checked against the VM's lock and the project's
``metadata_items``, in one transaction with the count it checks."""
from common import exception
from common.db import api as db_api
from common.db import instance_metadata, quota_sets
from nova_api import vm_fields, vm_locks


def metadata_limit(s, project_id, quota_defaults):
    return quota_sets.project_limits(s, project_id, quota_defaults)["metadata_items"]


class VMMetadata:
    def __init__(self, db, quota_defaults):
        self.db = db
        self.quota_defaults = quota_defaults

    def get(self, ctxt, ref):
        with self.db.transaction() as s:
            inst = db_api.instance_get_by_ref(s, ctxt.project_id, ref)
            return instance_metadata.get(s, inst.id)

    def get_item(self, ctxt, ref, key):
        """One value; MetadataItemNotFound (404) for a key the VM has not."""
        metadata = self.get(ctxt, ref)
        if key not in metadata:
            raise exception.MetadataItemNotFound(instance=ref, key=key)
        return metadata[key]

    def replace(self, ctxt, ref, metadata):
        """The VM's metadata becomes exactly ``metadata``; returns it."""
        metadata = vm_fields.metadata_items(metadata)
        return self._write(ctxt, ref, lambda s, vm_id: instance_metadata.replace(
            s, vm_id, metadata))

    def merge(self, ctxt, ref, metadata):
        """Set the keys of ``metadata``, keep the others; the whole metadata after."""
        metadata = vm_fields.metadata_items(metadata)
        return self._write(ctxt, ref, lambda s, vm_id: instance_metadata.merge(
            s, vm_id, metadata))

    def set_item(self, ctxt, ref, key, value):
        """Set one key; returns {key: value}."""
        item = vm_fields.metadata_items({key: value})
        self._write(ctxt, ref, lambda s, vm_id: instance_metadata.merge(s, vm_id, item))
        return item

    def delete_item(self, ctxt, ref, key):
        """Drop one key; MetadataItemNotFound (404) if the VM has no such key."""
        self._write(ctxt, ref, lambda s, vm_id: instance_metadata.delete_item(s, vm_id, key))

    def _write(self, ctxt, ref, write):
        """``write(s, instance_id)`` in one transaction with the checks: the
        lock (non-admins), then the count against ``metadata_items``."""
        with self.db.transaction() as s:
            inst = db_api.instance_get_by_ref(s, ctxt.project_id, ref)
            # Updating the row first (its updated_at) holds its row lock to the
            # commit: this VM's metadata writers go one at a time, so the count
            # below is the one that gets committed.
            if not db_api.instance_update_if(s, inst.id, {}, **vm_locks.guard(ctxt)):
                s.refresh(inst)
                vm_locks.refuse_if_locked(ctxt, inst, "change the metadata of")
                raise exception.InstanceNotFound(instance=ref)  # deleted meanwhile
            result = write(s, inst.id)
            vm_fields.metadata_count(len(instance_metadata.get(s, inst.id)),
                                     metadata_limit(s, inst.project_id, self.quota_defaults))
            return result
