"""Nova's server fields at VM create (VMService.create and POST /v1/vms):
metadata (keys, values, the project's metadata_items quota), the caller's
keypair copied onto the VM, base64 user_data, access IPs (IPv6 canonical),
disk_config; each bad one a 400 naming it (403 past the quota), nothing
stored."""
import base64

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from common import context, exception
from common.db import auth, instance_metadata, keypairs, quota_sets
from common.db.models import Instance
from nova_api import vm_service
from nova_api.app import create_app

KEY = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
    serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode() + " me@x"


def new_user(db, project, name):
    """(token, user id) of a new member of ``project`` (made if missing)."""
    with db.transaction() as s:
        try:
            auth.project_get(s, project)
        except exception.NotFound:
            auth.project_create(s, project, project_id=project)
    with db.transaction() as s:
        user = auth.user_create(s, name, project, "member")
        return auth.token_create(s, user.name), user.id


@pytest.fixture
def api(conf, db, image, recorder):
    app = create_app(conf, db, recorder(), recorder())
    client = app.test_client()
    token, client.user_id = new_user(db, "p", "alice")
    client.environ_base["HTTP_X_AUTH_TOKEN"] = token
    with db.transaction() as s:
        keypairs.create(s, client.user_id, "p", "mykey", KEY,
                        {"instances": -1, "cores": -1, "ram": -1})
    return client


def create(api, headers=None, **fields):
    return api.post("/v1/vms", headers=headers, json=dict(
        {"name": "web1", "image": "blank", "flavor": "m1.tiny"}, **fields))


def live_vms(db):
    with db.transaction() as s:
        return s.scalars(sa.select(Instance).where(Instance.deleted_at.is_(None))).all()


def test_v1_create_stores_metadata_key_and_user_data(api, db):
    user_data = base64.b64encode(b"#!/bin/sh\necho hi\n").decode()
    r = create(api, metadata={"role": "web", "a:b. c-d_e": ""}, key_name="mykey",
               user_data=user_data)
    assert r.status_code == 202, r.get_json()
    shown = [r.get_json()["vm"], api.get("/v1/vms/web1").get_json()["vm"]]
    for vm in shown:
        assert (vm["key_name"], vm["metadata"]) == ("mykey", {"role": "web", "a:b. c-d_e": ""})
    assert "metadata" not in api.get("/v1/vms").get_json()["vms"][0]
    [vm] = live_vms(db)
    assert (vm.key_name, vm.key_data, vm.user_data) == ("mykey", KEY, user_data)
    assert (vm.disk_config, vm.locked, vm.access_ipv4) == ("MANUAL", False, None)
    with db.transaction() as s:
        assert instance_metadata.get(s, vm.id) == {"role": "web", "a:b. c-d_e": ""}


@pytest.mark.parametrize("fields, needle", [
    ({"metadata": {"bad/key": "v"}}, "metadata"),
    ({"metadata": {"": "v"}}, "metadata"),
    ({"metadata": {"k" * 256: "v"}}, "metadata"),
    ({"metadata": {"k": "v" * 256}}, "metadata"),
    ({"metadata": {"k": 1}}, "metadata"),
    ({"metadata": ["k"]}, "metadata"),
    ({"key_name": "nope"}, "key_name"),
    ({"user_data": "not base64!"}, "user_data"),
    ({"user_data": "QUFB" * 16384}, "user_data"),
])
def test_v1_bad_fields_are_400_naming_them(api, db, fields, needle):
    r = create(api, **fields)
    assert r.status_code == 400, r.get_json()
    assert needle in r.get_json()["error"]["message"]
    assert live_vms(db) == []


def test_another_users_keypair_is_unknown(api, db):
    token, _ = new_user(db, "p", "bob")
    r = create(api, key_name="mykey", headers={"X-Auth-Token": token})
    assert r.status_code == 400 and "mykey" in r.get_json()["error"]["message"]


def test_metadata_past_the_projects_quota_is_403(api, db):
    assert create(api, metadata={"k%d" % i: "v" for i in range(129)}).status_code == 403
    with db.transaction() as s:
        quota_sets.project_set(s, "p", {"metadata_items": 2})
    r = create(api, metadata={"a": "1", "b": "2", "c": "3"})
    assert r.status_code == 403 and "metadata_items" in r.get_json()["error"]["message"]
    assert live_vms(db) == []
    assert create(api, metadata={"a": "1", "b": "2"}).status_code == 202


@pytest.fixture
def service(db, image, recorder):
    _, user_id = new_user(db, "p", "carol")
    ctxt = context.RequestContext(project_id="p", user_id=user_id)
    return vm_service.VMService(db, recorder(), recorder()), ctxt


def test_access_ips_and_disk_config(service, db):
    svc, ctxt = service
    vm = svc.create(ctxt, "web1", "blank", "m1.tiny", access_ipv4="10.0.0.1",
                    access_ipv6="0:0:0:0:0:0:BABE:DC0C:1602"[2:], disk_config="AUTO")
    assert (vm["access_ipv4"], vm["access_ipv6"], vm["disk_config"]) == (
        "10.0.0.1", "::babe:dc0c:1602", "AUTO")
    assert vm["metadata"] == {} and vm["locked"] is False
    row = svc.get(ctxt, vm["id"])
    assert (row.access_ipv4, row.access_ipv6, row.disk_config) == (
        "10.0.0.1", "::babe:dc0c:1602", "AUTO")


@pytest.mark.parametrize("fields, field", [
    ({"access_ipv4": "10.0.0.256"}, "accessIPv4"),
    ({"access_ipv4": "::1"}, "accessIPv4"),
    ({"access_ipv6": "10.0.0.1"}, "accessIPv6"),
    ({"access_ipv6": ""}, "accessIPv6"),
    ({"disk_config": "SOMETIMES"}, "disk_config"),
])
def test_bad_access_ips_and_disk_config_are_invalid(service, db, fields, field):
    svc, ctxt = service
    with pytest.raises(exception.Invalid, match=field):
        svc.create(ctxt, "web1", "blank", "m1.tiny", **fields)
    assert live_vms(db) == []
