"""VMService beyond create: update (rename, access IPs), the metadata
operations (checked keys and values, the metadata_items quota, a typed 404
for an unknown key) and lock/unlock (a locked VM refuses non-admins' actions,
metadata changes and deletes with a 409 naming the lock; admins may)."""
import pytest

from common import context, exception, states
from common.db import api as db_api
from common.db import auth, quota_sets
from nova_api import vm_metadata, vm_service

MEMBER = context.RequestContext(project_id="p", user_id="u1")
ADMIN = context.RequestContext(project_id="p", user_id="a1", is_admin=True)


def metadata(svc):
    """The API's metadata service on the same database and quota defaults."""
    return vm_metadata.VMMetadata(svc.db, svc.quota_defaults)



@pytest.fixture
def svc(db, image, recorder):
    with db.transaction() as s:
        auth.project_create(s, "p", project_id="p")
    return vm_service.VMService(db, recorder(), recorder())


def on_host(svc, db, name="web1", **fields):
    vm = svc.create(MEMBER, name, "blank", "m1.tiny", **fields)
    with db.transaction() as s:
        db_api.instance_update_if(s, vm["id"], {"host": "h1", "task_state": None,
                                                "vm_state": states.ACTIVE})
    return vm["id"]


def test_update_renames_and_sets_access_ips(svc, db):
    vm = on_host(svc, db, access_ipv4="10.0.0.1")
    row = svc.update(MEMBER, vm, name="Wéb one", access_ipv6="2001:DB8:0:0:0:0:0:1")
    assert (row.name, row.access_ipv4, row.access_ipv6) == ("Wéb one", "10.0.0.1",
                                                            "2001:db8::1")
    row = svc.update(MEMBER, "Wéb one", access_ipv4=None)
    assert (row.name, row.access_ipv4) == ("Wéb one", None)
    assert svc.get(MEMBER, vm).access_ipv6 == "2001:db8::1"


def test_update_refuses_bad_values_and_a_taken_name(svc, db):
    vm = on_host(svc, db)
    on_host(svc, db, name="web2")
    for bad in ("", "   ", "x" * 256, "a\nb", 5):
        with pytest.raises(exception.Invalid, match="name"):
            svc.update(MEMBER, vm, name=bad)
    with pytest.raises(exception.Invalid, match="accessIPv4"):
        svc.update(MEMBER, vm, access_ipv4="1.2.3")
    with pytest.raises(exception.DuplicateName):
        svc.update(MEMBER, vm, name="web2")
    assert svc.get(MEMBER, vm).name == "web1"


def test_metadata_operations(svc, db):
    vm = on_host(svc, db, metadata={"a": "1"})
    assert metadata(svc).get(MEMBER, vm) == {"a": "1"}
    assert metadata(svc).merge(MEMBER, vm, {"b": "2", "a": "one"}) == {"a": "one", "b": "2"}
    assert metadata(svc).set_item(MEMBER, vm, "c", "3") == {"c": "3"}
    assert metadata(svc).get_item(MEMBER, vm, "c") == "3"
    metadata(svc).delete_item(MEMBER, vm, "a")
    assert metadata(svc).get(MEMBER, vm) == {"b": "2", "c": "3"}
    assert metadata(svc).replace(MEMBER, vm, {"z": ""}) == {"z": ""}
    assert metadata(svc).get(MEMBER, "web1") == {"z": ""}
    with pytest.raises(exception.MetadataItemNotFound):
        metadata(svc).delete_item(MEMBER, vm, "nope")
    with pytest.raises(exception.MetadataItemNotFound):
        metadata(svc).get_item(MEMBER, vm, "nope")
    with pytest.raises(exception.Invalid, match="metadata"):
        metadata(svc).merge(MEMBER, vm, {"bad/key": "v"})
    with pytest.raises(exception.Invalid, match="metadata"):
        metadata(svc).set_item(MEMBER, vm, "k", "v" * 256)
    with pytest.raises(exception.InstanceNotFound):
        metadata(svc).get(MEMBER, "no-such-vm")


def test_metadata_past_the_quota_is_refused_and_nothing_changes(svc, db):
    vm = on_host(svc, db, metadata={"a": "1", "b": "2"})
    with db.transaction() as s:
        quota_sets.project_set(s, "p", {"metadata_items": 3})
    assert metadata(svc).merge(MEMBER, vm, {"c": "3", "a": "x"}) == {"a": "x", "b": "2",
                                                                     "c": "3"}
    with pytest.raises(exception.MetadataLimitExceeded) as e:
        metadata(svc).set_item(MEMBER, vm, "d", "4")
    assert e.value.code == 403
    with pytest.raises(exception.MetadataLimitExceeded):
        metadata(svc).replace(MEMBER, vm, {k: "v" for k in "wxyz"})
    assert metadata(svc).get(MEMBER, vm) == {"a": "x", "b": "2", "c": "3"}


def test_a_locked_vm_refuses_members_and_admins_may_act(svc, db):
    vm = on_host(svc, db)
    svc.lock(MEMBER, vm)
    row = svc.get(MEMBER, vm)
    assert (row.locked, row.locked_by) == (True, "owner")
    for attempt in (lambda: svc.action(MEMBER, vm, "stop"),
                    lambda: svc.action(MEMBER, vm, "reboot", hard=True),
                    lambda: metadata(svc).set_item(MEMBER, vm, "k", "v"),
                    lambda: metadata(svc).replace(MEMBER, vm, {}),
                    lambda: svc.delete(MEMBER, vm)):
        with pytest.raises(exception.InstanceLocked, match="VM web1 is locked") as e:
            attempt()
        assert e.value.code == 409
    assert svc.get(MEMBER, vm).task_state is None
    assert svc.compute_rpcapi.calls == []
    metadata(svc).set_item(ADMIN, vm, "k", "v")
    svc.action(ADMIN, vm, "stop")
    assert [c[0] for c in svc.compute_rpcapi.calls] == ["stop_instance"]
    svc.unlock(MEMBER, vm)
    assert svc.get(MEMBER, vm).locked is False


def test_an_admins_lock_only_an_admin_lifts(svc, db):
    vm = on_host(svc, db)
    svc.lock(ADMIN, vm)
    svc.lock(MEMBER, vm)  # already locked: stays the admin's
    assert svc.get(MEMBER, vm).locked_by == "admin"
    with pytest.raises(exception.Forbidden):
        svc.unlock(MEMBER, vm)
    svc.unlock(ADMIN, vm)
    svc.unlock(ADMIN, vm)  # unlocking an unlocked VM changes nothing
    svc.delete(MEMBER, vm)
    assert [c[0] for c in svc.compute_rpcapi.calls] == ["terminate_instance"]


def test_a_locked_vm_without_a_host_is_deleted_only_by_an_admin(svc, db):
    vm = svc.create(MEMBER, "web1", "blank", "m1.tiny")["id"]
    svc.lock(MEMBER, vm)
    with pytest.raises(exception.InstanceLocked):
        svc.delete(MEMBER, vm)
    svc.delete(ADMIN, vm)
    with pytest.raises(exception.InstanceNotFound):
        svc.get(MEMBER, vm)
