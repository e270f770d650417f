"""views.VmListEncoder: the list's JSON is exactly the views' JSON of each
VM, whatever the memo holds; the memo keeps one entry per VM id."""
import datetime
import json

from nova_api import views

T = datetime.datetime(2026, 1, 2, 3, 4, 5)


def row(i, vm_state="active", fault=None):
    return views.VmRow(id="vm-%d" % i, name="n%d" % i, vm_state=vm_state, task_state=None,
                       power_state="running", host="h", project_id="p", group_id=None,
                       image_id="img", flavor_id="fl", vcpus=1, memory_mb=128, root_gb=1,
                       created_at=T, updated_at=T, launched_at=None,
                       mac_address="52:54:00:00:00:%02x" % i, ip_address=None, fault=fault)


IMAGES, FLAVORS = {"img": "cirros"}, {"fl": "m1.tiny"}


def expected(rows, images=IMAGES):
    return [views.vm_row(r, images, FLAVORS) for r in rows]


def test_empty_list():
    assert views.VmListEncoder().encode([], IMAGES, FLAVORS) == "[]"


def test_same_json_as_the_views_and_a_changed_vm_replaces_its_entry():
    enc = views.VmListEncoder()
    rows = [row(i) for i in range(5)]
    assert json.loads(enc.encode(rows, IMAGES, FLAVORS)) == expected(rows)
    rows[2] = row(2, vm_state="stopped", fault="boom \u00e9")
    for _ in range(2):  # a miss, then a hit
        assert json.loads(enc.encode(rows, IMAGES, FLAVORS)) == expected(rows)
    renamed = {"img": "other"}  # a name is part of what a VM's text is made of
    assert json.loads(enc.encode(rows, renamed, FLAVORS)) == expected(rows, renamed)
    assert len(enc._texts) == 5


def test_memo_is_bounded():
    enc = views.VmListEncoder(max_entries=3)
    rows = [row(i) for i in range(7)]
    assert json.loads(enc.encode(rows, IMAGES, FLAVORS)) == expected(rows)
    assert len(enc._texts) <= 3
