"""Images as Glance v2 sees them: who may see and change one, queries with
Glance's filters, extra properties and tags, and the status changes of an
upload as conditional UPDATEs (queued -> saving -> active, or back to
queued), so that two uploads of one image cannot both run.

Visibility (Glance's rules, without image members): an admin sees every
image; a project sees its own, public ones, and community ones when it asks
for them (or owns them). ``shared`` images are therefore seen by their owner
only, as in Glance before a member is added."""
import sqlalchemy as sa
from sqlalchemy import exc

from common import exception
from common.db.models import Image, ImageProperty, ImageTag, Project, utcnow

VISIBILITIES = ("public", "private", "shared", "community")
STATUSES = ("queued", "saving", "active", "killed", "deleted", "deactivated",
            "uploading", "importing", "pending_delete")


def _live():
    return sa.select(Image).where(Image.deleted_at.is_(None))


# Read for every VM built: prebuilt, a read-only row.
_BUILD_FIELDS = (sa.select(Image.id, Image.name, Image.checksum, Image.size, Image.disk_format)
                 .where(Image.id == sa.bindparam("image_id"), Image.deleted_at.is_(None)))


def image_row(s, image_id):
    """A live image by id, with the fields of ``payloads.image``; None if gone."""
    return s.execute(_BUILD_FIELDS, {"image_id": image_id}).first()


def visible_to(ctxt, image):
    return (ctxt.is_admin or image.visibility in ("public", "community")
            or (image.owner is not None and image.owner == ctxt.project_id))


def owned_by(ctxt, image):
    """Whether ``ctxt`` may change or delete ``image`` (its owner or an admin)."""
    return ctxt.is_admin or (image.owner is not None and image.owner == ctxt.project_id)


def may_fetch_any(s, ctxt, service_project):
    """Whether ``ctxt`` is a compute host's service user: a member of the
    project named ``service_project``, who may download any image's data
    (the compute hosts build VMs of every project)."""
    if ctxt.is_admin:
        return True
    if not service_project or ctxt.project_id is None or "member" not in ctxt.roles:
        return False
    project = s.get(Project, ctxt.project_id)
    return project is not None and project.name == service_project


def service_writable(s, ctxt, image_id, service_project, deleting=False):
    """The live snapshot image ``image_id`` (one with an ``instance_uuid``
    property, made by a VM's snapshot or backup) that is not active yet, if
    ``ctxt`` is a compute host's service user: the host uploads its data, or
    deletes it when the snapshot failed; ``deleting``: also an active backup
    (``image_type`` backup), which the host deletes when a newer one rotates
    it out. None otherwise (the caller's own rights apply)."""
    if ctxt.is_admin or not may_fetch_any(s, ctxt, service_project):
        return None
    image = s.scalars(_live().where(Image.id == image_id)).first()
    if image is None:
        return None
    properties = properties_of(s, [image.id])[image.id]
    if "instance_uuid" not in properties:
        return None
    if image.status in ("queued", "saving") or (
            deleting and properties.get("image_type") == "backup"):
        return image
    return None


def delete_unfilled_snapshots(s, instance_id):
    """Delete the VM's snapshot images still ``queued`` (no data: a failed
    upload put its image back to queued with nothing stored); their ids."""
    images = s.scalars(_live().where(Image.status == "queued", sa.exists().where(
        ImageProperty.image_id == Image.id, ImageProperty.name == "instance_uuid",
        ImageProperty.value == instance_id))).all()
    for image in images:
        delete(s, image)
    return [i.id for i in images]


def get(s, ctxt, image_id):
    """The live image ``image_id`` if ``ctxt`` may see it; else ImageNotFound."""
    image = s.scalars(_live().where(Image.id == image_id)).first()
    if image is None or not visible_to(ctxt, image):
        raise exception.ImageNotFound(image=image_id)
    return image


def visibility_clause(ctxt, visibility=None):
    """The WHERE clause of what ``ctxt`` lists for the ``visibility`` filter
    (None: Glance's default, which leaves out others' community images)."""
    own = sa.and_(Image.owner.is_not(None), Image.owner == ctxt.project_id)
    if visibility is None:
        return sa.true() if ctxt.is_admin else sa.or_(Image.visibility == "public", own)
    if visibility == "all":
        return sa.true() if ctxt.is_admin else sa.or_(
            Image.visibility.in_(("public", "community")), own)
    clause = Image.visibility == visibility
    if visibility in ("private", "shared") and not ctxt.is_admin:
        clause = sa.and_(clause, own)
    return clause


def query(s, ctxt, visibility=None, conditions=(), tags=(), properties=None):
    """Live images ``ctxt`` may list, matching every one of ``conditions``
    (clauses on Image), carrying every tag of ``tags`` and the ``properties``
    {name: value}."""
    stmt = _live().where(visibility_clause(ctxt, visibility), *conditions)
    for tag in tags:
        stmt = stmt.where(sa.exists().where(ImageTag.image_id == Image.id,
                                            ImageTag.value == tag))
    for name, value in (properties or {}).items():
        stmt = stmt.where(sa.exists().where(ImageProperty.image_id == Image.id,
                                            ImageProperty.name == name,
                                            ImageProperty.value == value))
    return s.scalars(stmt).all()


def properties_of(s, image_ids):
    """{image id: {name: value}} for ``image_ids``."""
    found = {i: {} for i in image_ids}
    if image_ids:
        rows = s.execute(sa.select(ImageProperty.image_id, ImageProperty.name,
                                   ImageProperty.value)
                         .where(ImageProperty.image_id.in_(list(image_ids))))
        for image_id, name, value in rows:
            found[image_id][name] = value
    return found


def tags_of(s, image_ids):
    """{image id: [tag, ...] in order} for ``image_ids``."""
    found = {i: [] for i in image_ids}
    if image_ids:
        rows = s.execute(sa.select(ImageTag.image_id, ImageTag.value)
                         .where(ImageTag.image_id.in_(list(image_ids)))
                         .order_by(ImageTag.value))
        for image_id, value in rows:
            found[image_id].append(value)
    return found


def create(s, values, properties, tags):
    # Ids of deleted images are not reused either (as in Glance).
    if s.get(Image, values["id"]) is not None:
        raise exception.Conflict(reason="An image with id %s already exists." % values["id"])
    image = Image(**values)
    s.add(image)
    try:
        s.flush()
    except exc.IntegrityError as e:  # the same id, created meanwhile
        raise exception.Conflict(reason="An image with id %s already exists."
                                 % values["id"]) from e
    set_properties(s, image.id, properties)
    set_tags(s, image.id, tags)
    return image


def update(s, image, values, properties, tags):
    """Set ``values`` on ``image`` and replace its properties and tags."""
    for key, value in values.items():
        setattr(image, key, value)
    image.updated_at = utcnow()
    s.flush()
    set_properties(s, image.id, properties)
    set_tags(s, image.id, tags)
    return image


def set_properties(s, image_id, properties):
    s.execute(sa.delete(ImageProperty).where(ImageProperty.image_id == image_id))
    if properties:
        s.execute(sa.insert(ImageProperty), [{"image_id": image_id, "name": k, "value": v}
                                             for k, v in properties.items()])


def set_tags(s, image_id, tags):
    s.execute(sa.delete(ImageTag).where(ImageTag.image_id == image_id))
    if tags:
        s.execute(sa.insert(ImageTag), [{"image_id": image_id, "value": t}
                                        for t in sorted(set(tags))])


def _transition(s, image_id, from_status, to_status, **values):
    result = s.execute(sa.update(Image)
                       .where(Image.id == image_id, Image.deleted_at.is_(None),
                              Image.status == from_status)
                       .values(status=to_status, updated_at=utcnow(), **values))
    return result.rowcount == 1


def start_upload(s, image_id):
    """queued -> saving; False if the image is not (or no longer) queued."""
    return _transition(s, image_id, "queued", "saving")


def finish_upload(s, image_id, columns):
    """saving -> active with the data's ``columns``; False if the image left
    saving meanwhile (deleted during the upload)."""
    return _transition(s, image_id, "saving", "active", **columns)


def abandon_upload(s, image_id):
    """saving -> queued (the upload failed; as Glance's ``_restore``)."""
    return _transition(s, image_id, "saving", "queued")


def delete(s, image):
    image.status = "deleted"
    image.deleted_at = image.updated_at = utcnow()
    s.flush()
