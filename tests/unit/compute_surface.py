"""Shared by the unit tests of the compute surface's resources: an app with
an admin, a member and a reader, and short request helpers."""
import pytest

from nova_api.app import create_app
from tests.unit.conftest import token_for

ROOT = "/compute/v2.1"
BASE = "http://localhost"


class Caller:
    """Requests to the compute surface with one token."""

    def __init__(self, client, token):
        self.client, self.token = client, token

    def _call(self, method, path, **kwargs):
        headers = dict(kwargs.pop("headers", {}), **{"X-Auth-Token": self.token})
        return getattr(self.client, method)(ROOT + path, headers=headers, **kwargs)

    def get(self, path, **kwargs):
        return self._call("get", path, **kwargs)

    def post(self, path, body=None, **kwargs):
        return self._call("post", path, json=body, **kwargs)

    def put(self, path, body=None, **kwargs):
        return self._call("put", path, json=body, **kwargs)

    def delete(self, path, **kwargs):
        return self._call("delete", path, **kwargs)


def fault(r, code):
    """The message of a Nova fault body with status ``code``."""
    assert r.status_code == code, (r.status_code, r.get_data(as_text=True))
    (name, body), = r.get_json().items()
    assert body["code"] == code and body["message"], body
    return body["message"]


@pytest.fixture
def app(conf, db, recorder):
    return create_app(conf, db, recorder(), recorder())


@pytest.fixture
def admin(app, db):
    return Caller(app.test_client(), token_for(db, "admins", "admin"))


@pytest.fixture
def member(app, db):
    return Caller(app.test_client(), token_for(db, "p1", "member"))


@pytest.fixture
def other(app, db):
    """A member of another project."""
    return Caller(app.test_client(), token_for(db, "p2", "member"))


@pytest.fixture
def reader(app, db):
    return Caller(app.test_client(), token_for(db, "p1", "reader"))
