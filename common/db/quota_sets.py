"""Nova's quota sets: every resource Nova's API shows, with its limit for a
project (its override, else the ``default`` quota class's, else the
default) and what the project uses.

Enforced: instances, cores and ram (with each VM create, common/db/auth.py),
key_pairs (per user, at keypair create) and server_groups (at group create).
The rest are stored and shown as Nova does; -1 means unlimited."""
import sqlalchemy as sa

from common import exception
from common.db import auth, upsert
from common.db.models import KeyPair, Project, QuotaClass, QuotaLimit, ServerGroup

# Nova's defaults for what [quota] does not configure; -1 for what mininova
# has none of (networks are not Nova's business here).
FIXED_DEFAULTS = {
    "metadata_items": 128, "key_pairs": 100, "server_groups": 10,
    "server_group_members": 10, "injected_files": 5, "injected_file_content_bytes": 10240,
    "injected_file_path_bytes": 255, "floating_ips": -1, "fixed_ips": -1,
    "security_groups": -1, "security_group_rules": -1,
}
RESOURCES = auth.RESOURCES + tuple(FIXED_DEFAULTS)
DEFAULT_CLASS = auth.DEFAULT_QUOTA_CLASS


def _overlay(limits, rows):
    for resource, hard_limit in rows:
        if resource in limits:
            limits[resource] = hard_limit
    return limits


def _class_rows(s, class_name):
    return s.execute(sa.select(QuotaClass.resource, QuotaClass.hard_limit)
                     .where(QuotaClass.class_name == class_name)).all()


def defaults(s, configured):
    """{resource: limit} every project starts from: ``configured`` (the
    [quota] options: instances, cores, ram) and FIXED_DEFAULTS, under the
    ``default`` class's limits."""
    limits = {r: configured[r] for r in auth.RESOURCES}
    limits.update(FIXED_DEFAULTS)
    return _overlay(limits, _class_rows(s, DEFAULT_CLASS))


def class_limits(s, class_name, configured):
    """A quota class's limits: the defaults under its own (Nova's answer for
    any class name, even one never set)."""
    return _overlay(defaults(s, configured), _class_rows(s, class_name))


def class_set(s, class_name, limits):
    _upsert(s, QuotaClass, {"class_name": class_name}, limits)


def project_limits(s, project_id, configured):
    """{resource: limit} for a project: its overrides over ``defaults``."""
    rows = s.execute(sa.select(QuotaLimit.resource, QuotaLimit.hard_limit)
                     .where(QuotaLimit.project_id == project_id)).all()
    return _overlay(defaults(s, configured), rows)


def project_set(s, project_id, limits):
    """Override some of an existing project's limits (ProjectNotFound if
    there is no project with that id)."""
    if s.get(Project, project_id) is None:
        raise exception.ProjectNotFound(project=project_id)
    _upsert(s, QuotaLimit, {"project_id": project_id}, limits)


def project_reset(s, project_id):
    """Drop a project's overrides: it has the defaults again."""
    s.execute(sa.delete(QuotaLimit).where(QuotaLimit.project_id == project_id)
              .execution_options(synchronize_session=False))


def _upsert(s, model, key, limits):
    for resource in limits:
        if resource not in RESOURCES:
            raise exception.Invalid(reason="unknown quota resource %s" % resource)
    upsert.upsert(s, model, [dict(key, resource=resource, hard_limit=limit)
                             for resource, limit in limits.items()], ["hard_limit"])


def keypair_count(s, user_id):
    return s.scalar(sa.select(sa.func.count()).select_from(KeyPair)
                    .where(KeyPair.user_id == user_id))


def server_group_count(s, project_id):
    return s.scalar(sa.select(sa.func.count()).select_from(ServerGroup)
                    .where(ServerGroup.project_id == project_id,
                           ServerGroup.deleted_at.is_(None)))


def usage(s, project_id, user_id=None):
    """{resource: in use} for a project; key pairs are counted for
    ``user_id`` (they belong to users), 0 without one."""
    used = {r: 0 for r in RESOURCES}
    used.update(auth.quota_usage(s, project_id))
    used["server_groups"] = server_group_count(s, project_id)
    if user_id is not None:
        used["key_pairs"] = keypair_count(s, user_id)
    return used


def check_room(s, resource, used, project_id, configured):
    """QuotaExceeded (403) if one more of ``resource`` than ``used`` would
    pass the project's limit."""
    limit = project_limits(s, project_id, configured)[resource]
    if 0 <= limit < used + 1:
        raise exception.QuotaExceeded(resource=resource, requested=1, used=used, limit=limit)

