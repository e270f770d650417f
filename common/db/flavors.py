"""Flavors as Nova's API has them: who sees which (public flavors, private
ones shared with projects), filtered and paged lists, an admin's creates and
deletes, access lists and extra specs.

Visibility: admins see every flavor; anyone else the public ones and the
private ones shared with their project, and only enabled ones in lists.
A deleted flavor is gone (its id and name may be used again); the VMs built
with it keep their copies of its sizes."""
import uuid

import sqlalchemy as sa
from sqlalchemy import exc

from common import exception
from common.db import upsert
from common.db.models import Flavor, FlavorAccess, FlavorExtraSpec, Project

# Nova's sort keys (``flavorid`` is the API's id), each to its column.
SORT_KEYS = {
    "flavorid": Flavor.id, "id": Flavor.id, "name": Flavor.name, "memory_mb": Flavor.memory_mb,
    "root_gb": Flavor.root_gb, "vcpus": Flavor.vcpus, "ephemeral_gb": Flavor.ephemeral_gb,
    "swap": Flavor.swap_mb, "rxtx_factor": Flavor.rxtx_factor, "is_public": Flavor.is_public,
    "disabled": Flavor.disabled, "created_at": Flavor.created_at,
}


def _shared_with(project_id):
    return sa.exists().where(FlavorAccess.flavor_id == Flavor.id,
                             FlavorAccess.project_id == project_id)


def _visible(query, project_id, is_admin):
    if is_admin:
        return query
    return query.where(sa.or_(Flavor.is_public.is_(True), _shared_with(project_id)))


def get(s, flavor_id, project_id=None, is_admin=True):
    """The flavor with id ``flavor_id`` if the caller may see it, else
    FlavorNotFound (a private flavor not shared with them does not exist
    for them)."""
    flavor = s.scalars(_visible(sa.select(Flavor).where(Flavor.id == str(flavor_id)),
                                project_id, is_admin)).first()
    if flavor is None:
        raise exception.FlavorNotFound(flavor=flavor_id)
    return flavor


def page(s, project_id, is_admin, is_public=True, min_ram=None, min_disk=None,
         sort_key="flavorid", sort_dir="asc", limit=None, marker=None):
    """Flavors in Nova's order and filters. ``is_public``: True the public
    ones and those shared with ``project_id``, False the private ones, None
    all (both only for admins: anyone else always gets True, and no disabled
    flavor). ``marker``: the id of the last flavor of the previous page, one
    the caller may see (else MarkerNotFound)."""
    column = SORT_KEYS[sort_key]
    query = sa.select(Flavor)
    if not is_admin:
        is_public = True
        query = query.where(Flavor.disabled.is_(False))
    if is_public is True:
        query = query.where(sa.or_(Flavor.is_public.is_(True), _shared_with(project_id)))
    elif is_public is False:
        query = query.where(Flavor.is_public.is_(False))
    if min_ram is not None:
        query = query.where(Flavor.memory_mb >= min_ram)
    if min_disk is not None:
        query = query.where(Flavor.root_gb >= min_disk)
    descending = sort_dir == "desc"
    if marker is not None:
        try:
            last = get(s, marker, project_id, is_admin)
        except exception.FlavorNotFound:
            raise exception.MarkerNotFound(marker=marker) from None
        after = (column < getattr(last, column.key)) if descending else (
            column > getattr(last, column.key))
        next_id = (Flavor.id < last.id) if descending else (Flavor.id > last.id)
        query = query.where(sa.or_(after, sa.and_(column == getattr(last, column.key), next_id)))
    order = (column.desc(), Flavor.id.desc()) if descending else (column.asc(), Flavor.id.asc())
    query = query.order_by(*order)
    if limit is not None:
        query = query.limit(limit)
    return s.scalars(query).all()


def create(s, name, vcpus, memory_mb, root_gb, flavor_id=None, ephemeral_gb=0, swap_mb=0,
           rxtx_factor=1.0, is_public=True):
    """A new flavor; FlavorExists (409) if its id or name is taken.
    ``flavor_id`` None: a new UUID."""
    flavor_id = str(flavor_id) if flavor_id is not None else str(uuid.uuid4())
    if s.get(Flavor, flavor_id) is not None:
        raise exception.FlavorExists(field="ID", value=flavor_id)
    if s.scalars(sa.select(Flavor.id).where(Flavor.name == name)).first() is not None:
        raise exception.FlavorExists(field="name", value=name)
    flavor = Flavor(id=flavor_id, name=name, vcpus=vcpus, memory_mb=memory_mb, root_gb=root_gb,
                    ephemeral_gb=ephemeral_gb, swap_mb=swap_mb, rxtx_factor=rxtx_factor,
                    is_public=is_public, disabled=False)
    try:
        with s.begin_nested():
            s.add(flavor)
    except exc.IntegrityError as e:  # a concurrent create took the id or name
        raise exception.FlavorExists(field="ID or name", value=flavor_id) from e
    return flavor


def delete(s, flavor_id):
    """Remove a flavor with its access list and extra specs."""
    deleted = s.execute(sa.delete(Flavor).where(Flavor.id == str(flavor_id))
                        .execution_options(synchronize_session=False)).rowcount
    if not deleted:
        raise exception.FlavorNotFound(flavor=flavor_id)


# -- access lists (private flavors) --------------------------------------------

def access_list(s, flavor_id):
    return s.scalars(sa.select(FlavorAccess.project_id)
                     .where(FlavorAccess.flavor_id == str(flavor_id))
                     .order_by(FlavorAccess.project_id)).all()


def access_add(s, flavor_id, project_id):
    """Share a flavor with an existing project (ProjectNotFound if there is
    none with that id)."""
    get(s, flavor_id)
    if s.get(Project, project_id) is None:
        raise exception.ProjectNotFound(project=project_id)
    if s.get(FlavorAccess, (str(flavor_id), project_id)) is not None:
        raise exception.FlavorAccessExists(flavor=flavor_id, project=project_id)
    try:
        with s.begin_nested():
            s.add(FlavorAccess(flavor_id=str(flavor_id), project_id=project_id))
    except exc.IntegrityError as e:
        raise exception.FlavorAccessExists(flavor=flavor_id, project=project_id) from e


def access_remove(s, flavor_id, project_id):
    get(s, flavor_id)
    removed = s.execute(sa.delete(FlavorAccess).where(
        FlavorAccess.flavor_id == str(flavor_id), FlavorAccess.project_id == project_id)
        .execution_options(synchronize_session=False)).rowcount
    if not removed:
        raise exception.FlavorAccessNotFound(flavor=flavor_id, project=project_id)


# -- extra specs -----------------------------------------------------------------

def extra_specs(s, flavor_id):
    """{key: value} of a flavor (one the caller was allowed to see)."""
    rows = s.execute(sa.select(FlavorExtraSpec.key, FlavorExtraSpec.value)
                     .where(FlavorExtraSpec.flavor_id == str(flavor_id)))
    return dict(rows.all())


def extra_specs_set(s, flavor_id, specs):
    """Add or replace the given keys; the others stay."""
    upsert.upsert(s, FlavorExtraSpec, [{"flavor_id": str(flavor_id), "key": key, "value": value}
                                       for key, value in specs.items()], ["value"])


def extra_spec_delete(s, flavor_id, key):
    removed = s.execute(sa.delete(FlavorExtraSpec).where(
        FlavorExtraSpec.flavor_id == str(flavor_id), FlavorExtraSpec.key == key)
        .execution_options(synchronize_session=False)).rowcount
    if not removed:
        raise exception.FlavorExtraSpecNotFound(flavor=flavor_id, key=key)
