import pytest

from common import config
from common.db import migration
from common.db.session import Database


def register_blank_image(conf, db, workdir):
    """A tiny qcow2 imported into the store and registered as image "blank"; its id."""
    from nova_api import imagestore
    from common.db import api as db_api
    path = workdir / "base.qcow2"
    path.write_bytes(b"QFI\xfb" + b"\0" * 1020)
    stored = imagestore.import_file(conf, str(path))
    with db.transaction() as s:
        db_api.image_create(s, id=stored.image_id, name="blank", min_ram=0, min_disk=0,
                            disk_format="qcow2", status="active", **stored.columns())
    return stored.image_id


@pytest.fixture
def image(conf, db, tmp_path):
    """A tiny qcow2 registered as image "blank"; its id."""
    return register_blank_image(conf, db, tmp_path)


@pytest.fixture
def db(conf):
    url = config.database_url(conf)
    migration.db_sync(url)
    database = Database(url)
    yield database
    database.dispose()


def token_for(db, project, role="member"):
    """A fresh token of a new user in ``project`` (created with id = name)."""
    import uuid
    from common.db import auth
    with db.transaction() as s:
        try:
            auth.project_get(s, project)
        except Exception:
            auth.project_create(s, project, project_id=project)
    with db.transaction() as s:
        user = auth.user_create(s, "%s-%s-%s" % (project, role, uuid.uuid4().hex[:6]),
                                project, role)
        return auth.token_create(s, user.name)


def auth_headers(db, project, role="member"):
    return {"X-Auth-Token": token_for(db, project, role)}


TEST_PASSWORD_COST = 10  # scrypt at 1 MiB: a few ms per hash in tests


def password_user(db, name, project, role="member", password="p"):
    """A user ``name`` with a password, holding ``role`` in ``project``
    (created with id = name if missing); its id."""
    from common import passwords
    from common.db import auth
    with db.transaction() as s:
        try:
            auth.project_get(s, project)
        except Exception:
            auth.project_create(s, project, project_id=project)
    with db.transaction() as s:
        return auth.user_create(s, name, project, role, password_hash=passwords.hash_password(
            password, TEST_PASSWORD_COST)).id


def password_auth(name, password="p", project=None, user=None):
    """A Keystone v3 password authentication body (user by name in Default
    unless ``user`` says otherwise; scoped to ``project`` by name if given)."""
    user = user or {"name": name, "domain": {"name": "Default"}}
    body = {"auth": {"identity": {"methods": ["password"],
                                  "password": {"user": dict(user, password=password)}}}}
    if project is not None:
        body["auth"]["scope"] = {"project": {"name": project, "domain": {"id": "default"}}}
    return body
