"""VMs' metadata (Nova's server metadata): key/value rows of
``instance_metadata``, written only in the transaction that checks them
against the project's ``metadata_items`` limit (see nova_api/vm_fields.py)."""
import sqlalchemy as sa

from common import exception
from common.db.models import Instance, InstanceMetadata

_TABLE = InstanceMetadata.__table__
_GUEST_COLUMNS = (Instance.key_name, Instance.key_data, Instance.user_data)


def get(s, instance_id):
    """{key: value} of one VM."""
    return dict(s.execute(sa.select(_TABLE.c.key, _TABLE.c.value)
                          .where(_TABLE.c.instance_id == instance_id)).all())


def get_many(s, instance_ids):
    """{instance id: {key: value}} for ``instance_ids`` (every id a key,
    {} for VMs without metadata): one query for a page of VMs."""
    found = {i: {} for i in instance_ids}
    if found:
        rows = s.execute(sa.select(_TABLE.c.instance_id, _TABLE.c.key, _TABLE.c.value)
                         .where(_TABLE.c.instance_id.in_(list(found)))).all()
        for instance_id, key, value in rows:
            found[instance_id][key] = value
    return found


def replace(s, instance_id, metadata):
    """The VM's metadata becomes exactly ``metadata``."""
    s.execute(sa.delete(_TABLE).where(_TABLE.c.instance_id == instance_id))
    if metadata:
        s.execute(sa.insert(_TABLE), [{"instance_id": instance_id, "key": k, "value": v}
                                      for k, v in metadata.items()])
    return dict(metadata)


def merge(s, instance_id, metadata):
    """Set the keys of ``metadata`` (others stay); the whole metadata after."""
    if metadata:
        s.execute(sa.delete(_TABLE).where(_TABLE.c.instance_id == instance_id,
                                          _TABLE.c.key.in_(list(metadata))))
        s.execute(sa.insert(_TABLE), [{"instance_id": instance_id, "key": k, "value": v}
                                      for k, v in metadata.items()])
    return get(s, instance_id)


def delete_item(s, instance_id, key):
    """Drop one key; MetadataItemNotFound (404) if the VM has no such key."""
    removed = s.execute(sa.delete(_TABLE).where(_TABLE.c.instance_id == instance_id,
                                                _TABLE.c.key == key)).rowcount
    if not removed:
        raise exception.MetadataItemNotFound(instance=instance_id, key=key)


# One statement, built once: read for every build (scheduler, conductor).
_GUEST = (sa.select(*_GUEST_COLUMNS, _TABLE.c.key, _TABLE.c.value)
          .select_from(Instance.__table__.outerjoin(_TABLE, _TABLE.c.instance_id == Instance.id))
          .where(Instance.id == sa.bindparam("instance_id")))


def guest_data(s, instance_id):
    """What a VM's config drive carries beyond its row's usual fields
    (``payloads.GUEST_FIELDS``): its metadata, keypair and user_data; {}
    if there is no such VM."""
    rows = s.execute(_GUEST, {"instance_id": instance_id}).all()
    if not rows:
        return {}
    first = rows[0]
    return {"key_name": first.key_name, "key_data": first.key_data,
            "user_data": first.user_data,
            "metadata": {r.key: r.value for r in rows if r.key is not None}}
