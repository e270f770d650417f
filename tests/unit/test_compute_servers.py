"""/compute/v2.1/servers: list, detail, show and delete as Nova answers
them at 2.1 (filters, paging, who sees what, the detail view's keys and
values), each answer also checked with tempest's own v2_1 schemas."""
import datetime
import hashlib
import urllib.parse

import pytest
from tempest.lib.api_schema.response.compute.v2_1 import servers as schemas

from common.db import api as db_api
from tests.unit.compute_surface import admin, app, fault, member, other, reader  # noqa: F401
from tests.unit.test_compute_tempest_schemas import check

BASE = "http://localhost"


@pytest.fixture
def make_vm(db):
    """Stores a VM of project p1 (by default) and returns its id; each one
    a second younger than the one before, so that the order is known."""
    clock = [datetime.datetime(2026, 1, 1)]

    def make(name, project="p1", **values):
        clock[0] += datetime.timedelta(seconds=1)
        row = dict(name=name, project_id=project, user_id="u1", image_id="img-1",
                   flavor_id="1", vcpus=1, memory_mb=128, root_gb=1, vm_state="active",
                   power_state="running", host="node1", mac_address="52:54:00:00:00:01",
                   ip_address="192.168.122.10", launched_at=clock[0],
                   created_at=clock[0], updated_at=clock[0])
        row.update(values)
        with db.transaction() as s:
            return db_api.instance_insert(s, **row)["id"]
    return make


def ids(r):
    assert r.status_code == 200, r.get_data(as_text=True)
    return [s["id"] for s in r.get_json()["servers"]]


def test_list_is_newest_first_with_id_name_links_only(member, make_vm):
    first, second = make_vm("vm1"), make_vm("vm2")
    body = check(schemas.list_servers, member.get("/servers"))
    assert [s["id"] for s in body["servers"]] == [second, first]
    assert body["servers"][0] == {"id": second, "name": "vm2", "links": [
        {"rel": "self", "href": BASE + "/compute/v2.1/servers/" + second},
        {"rel": "bookmark", "href": BASE + "/compute/servers/" + second}]}
    assert "servers_links" not in body


def test_detail_view_of_an_active_server(member, admin, make_vm):
    vm = make_vm("vm1")
    body = check(schemas.get_server, member.get("/servers/" + vm))["server"]
    assert body == {
        "id": vm, "name": "vm1", "status": "ACTIVE", "tenant_id": "p1", "user_id": "u1",
        "metadata": {}, "hostId": hashlib.sha224(b"p1node1").hexdigest(),
        "image": {"id": "img-1", "links": [{"rel": "bookmark",
                                            "href": BASE + "/compute/images/img-1"}]},
        "flavor": {"id": "1", "links": [{"rel": "bookmark",
                                         "href": BASE + "/compute/flavors/1"}]},
        "created": "2026-01-01T00:00:01Z", "updated": "2026-01-01T00:00:01Z",
        "addresses": {"mininova": [{"version": 4, "addr": "192.168.122.10",
                                    "OS-EXT-IPS:type": "fixed",
                                    "OS-EXT-IPS-MAC:mac_addr": "52:54:00:00:00:01"}]},
        "accessIPv4": "", "accessIPv6": "",
        "links": [{"rel": "self", "href": BASE + "/compute/v2.1/servers/" + vm},
                  {"rel": "bookmark", "href": BASE + "/compute/servers/" + vm}],
        "OS-DCF:diskConfig": "MANUAL", "progress": 0, "key_name": None,
        "security_groups": [{"name": "default"}],
        "OS-SRV-USG:launched_at": "2026-01-01T00:00:01.000000",
        "OS-SRV-USG:terminated_at": None, "OS-EXT-AZ:availability_zone": "nova",
        "OS-EXT-STS:vm_state": "active", "OS-EXT-STS:task_state": None,
        "OS-EXT-STS:power_state": 1, "os-extended-volumes:volumes_attached": [],
        "config_drive": "True"}
    as_admin = check(schemas.get_server, admin.get("/servers/" + vm))["server"]
    assert {k: v for k, v in as_admin.items() if k.startswith("OS-EXT-SRV-ATTR:")} == {
        "OS-EXT-SRV-ATTR:host": "node1", "OS-EXT-SRV-ATTR:hypervisor_hostname": "node1",
        "OS-EXT-SRV-ATTR:instance_name": "mininova-" + vm}
    detail = check(schemas.list_servers_detail, member.get("/servers/detail"))
    assert detail["servers"] == [body]


def test_a_building_server_has_no_addresses_nor_host(member, make_vm):
    vm = make_vm("vm1", vm_state="building", task_state="scheduling", host=None,
                 power_state="nostate", launched_at=None)
    body = check(schemas.get_server, member.get("/servers/" + vm))["server"]
    assert (body["status"], body["addresses"], body["hostId"], body["progress"]) == (
        "BUILD", {}, "", 0)
    assert (body["OS-EXT-STS:task_state"], body["OS-EXT-STS:power_state"]) == ("scheduling", 0)


@pytest.mark.parametrize("vm_state,task_state,power_state,status,power", [
    ("stopped", None, "shutdown", "SHUTOFF", 4),
    ("paused", None, "paused", "PAUSED", 3),
    ("suspended", None, "suspended", "SUSPENDED", 7),
    ("active", "rebooting", "running", "REBOOT", 1),
    ("active", "rebooting_hard", "running", "HARD_REBOOT", 1),
    ("active", "deleting", "running", "ACTIVE", 1),
    ("stopped", "deleting", "shutdown", "SHUTOFF", 4),
    ("active", "powering-off", "running", "ACTIVE", 1),
    ("error", None, "crashed", "ERROR", 6),
])
def test_status_power_state_progress_and_fault(member, make_vm, vm_state, task_state,
                                               power_state, status, power):
    vm = make_vm("vm1", vm_state=vm_state, task_state=task_state, power_state=power_state,
                 fault="spawn failed")
    body = check(schemas.get_server, member.get("/servers/" + vm))["server"]
    assert (body["status"], body["OS-EXT-STS:power_state"]) == (status, power)
    assert body["OS-EXT-STS:vm_state"] == vm_state
    assert ("progress" in body) == (status == "ACTIVE")
    if status == "ERROR":
        assert body["fault"] == {"code": 500, "created": "2026-01-01T00:00:01Z",
                                 "message": "spawn failed"}
    else:
        assert "fault" not in body


def test_show_is_by_id_only_and_within_the_project(member, other, admin, make_vm):
    vm = make_vm("vm1")
    fault(member.get("/servers/vm1"), 404)
    fault(member.get("/servers/00000000-0000-0000-0000-000000000000"), 404)
    fault(other.get("/servers/" + vm), 404)
    assert admin.get("/servers/" + vm).get_json()["server"]["tenant_id"] == "p1"


def test_a_deleted_flavor_still_shows_its_id(member, make_vm):
    """As Nova's embedded flavor (MigrationsAdminTest.
    test_resize_server_revert_deleted_flavor)."""
    vm = make_vm("vm1", flavor_id="gone")
    flavor = check(schemas.get_server, member.get("/servers/" + vm))["server"]["flavor"]
    assert flavor["id"] == "gone"
    assert flavor["links"][0]["href"].endswith("/compute/flavors/gone")
    listed = check(schemas.list_servers_detail, member.get("/servers/detail"))["servers"]
    assert listed[0]["flavor"] == flavor


def test_filters(member, make_vm):
    web1 = make_vm("web1", ip_address="10.0.0.5")
    web2 = make_vm("web-2", vm_state="stopped", image_id="img-2", flavor_id="2",
                   ip_address="10.0.0.17")
    db1 = make_vm("db(1)", ip_address="fd00::5")
    assert ids(member.get("/servers?name=^web")) == [web2, web1]
    assert ids(member.get("/servers?name=web1$")) == [web1]
    assert ids(member.get("/servers?name=db(1)")) == []    # a regex: "(1)" is "1"
    assert ids(member.get("/servers?name=" + urllib.parse.quote("db("))) == [db1]  # literal
    assert ids(member.get("/servers/detail?status=shutoff")) == [web2]
    assert ids(member.get("/servers?status=ACTIVE")) == [db1, web1]
    assert ids(member.get("/servers?status=NOSUCH")) == []
    assert ids(member.get("/servers?image=img-2")) == [web2]
    assert ids(member.get("/servers?image=http://h/compute/images/img-2")) == [web2]
    assert ids(member.get("/servers?flavor=" + urllib.parse.quote(
        BASE + "/compute/flavors/2"))) == [web2]
    assert ids(member.get("/servers?ip=10.0.0.1")) == [web2]
    assert ids(member.get("/servers?ip=10%5C.0")) == [web2, web1]
    assert ids(member.get("/servers?ip6=fd00")) == [db1]
    # What OSC always sends, and what Nova ignores at 2.1.
    assert ids(member.get("/servers/detail?deleted=False&sort_key=x&foo=bar")) == [
        db1, web2, web1]


def test_a_catastrophic_name_regex_is_a_400_not_a_held_thread(member, make_vm):
    make_vm("a" * 60 + "!")
    pattern = urllib.parse.quote("(a|aa)+$")   # backtracks exponentially on that name
    assert "name" in fault(member.get("/servers?name=" + pattern), 400)
    assert "name" in fault(member.get("/servers/detail?name=" + pattern), 400)


def test_changes_since(member, make_vm, db):
    vm = make_vm("vm1")
    assert ids(member.get("/servers?changes-since=2025-12-31T00:00:00Z")) == [vm]
    assert ids(member.get("/servers?changes-since=2026-01-01T00:00:01%2B00:00")) == [vm]
    assert ids(member.get("/servers?changes-since=2099-01-01T00:00:00Z")) == []
    for bad in ("yesterday", "0001-01-01T00:00:00%2B01:00", "9999-12-31T23:59:59-01:00"):
        assert "changes-since" in fault(member.get("/servers?changes-since=" + bad), 400)
    with db.transaction() as s:
        db_api.instance_soft_delete(s, vm)
    assert ids(member.get("/servers")) == []
    body = check(schemas.list_servers_detail,
                 member.get("/servers/detail?changes-since=2025-12-31T00:00:00Z"))
    assert [(s["id"], s["status"]) for s in body["servers"]] == [(vm, "DELETED")]


def test_paging(member, make_vm):
    vms = [make_vm("vm%d" % i) for i in range(5)][::-1]
    body = check(schemas.list_servers, member.get("/servers?limit=2&name=vm"))
    assert [s["id"] for s in body["servers"]] == vms[:2]
    (link,) = body["servers_links"]
    assert link["rel"] == "next"
    url = urllib.parse.urlsplit(link["href"])
    assert url.path == "/compute/v2.1/servers"
    assert urllib.parse.parse_qs(url.query) == {"limit": ["2"], "name": ["vm"],
                                                "marker": [vms[1]]}
    body = check(schemas.list_servers_detail,
                 member.get("/servers/detail?limit=2&marker=" + vms[1]))
    assert [s["id"] for s in body["servers"]] == vms[2:4]
    assert ids(member.get("/servers?limit=3&marker=" + vms[3])) == vms[4:]
    assert ids(member.get("/servers?limit=0")) == []
    for bad in ("-1", "x", "1.5"):
        assert "limit" in fault(member.get("/servers?limit=" + bad), 400)
    fault(member.get("/servers?marker=00000000-0000-0000-0000-000000000000"), 400)
    fault(member.get("/servers?marker=nope"), 400)


def test_paging_with_a_project_id_in_the_url(member, make_vm):
    make_vm("vm1")
    r = member.client.get("/compute/v2.1/p1/servers?limit=1",
                          headers={"X-Auth-Token": member.token})
    body = check(schemas.list_servers, r)
    assert body["servers_links"][0]["href"].startswith(BASE + "/compute/v2.1/p1/servers?")
    assert body["servers"][0]["links"][0]["href"].startswith(BASE + "/compute/v2.1/p1/")


def test_other_projects_only_for_admins(member, admin, make_vm):
    mine, theirs = make_vm("vm1"), make_vm("vm2", project="p2")
    assert ids(member.get("/servers")) == [mine]
    assert ids(member.get("/servers?all_tenants=True&project_id=p2")) == [mine]
    assert ids(admin.get("/servers")) == []
    assert ids(admin.get("/servers?all_tenants")) == [theirs, mine]
    assert ids(admin.get("/servers/detail?all_tenants=1")) == [theirs, mine]
    assert ids(admin.get("/servers?all_tenants=False")) == []
    assert ids(admin.get("/servers?all_tenants=True&tenant_id=p2")) == [theirs]
    assert ids(admin.get("/servers?project_id=p1")) == [mine]
    assert "all_tenants" in fault(admin.get("/servers?all_tenants=maybe"), 400)


def test_delete_of_a_server_on_a_host_shows_it_deleting(member, other, make_vm, app):
    vm = make_vm("vm1")
    fault(other.delete("/servers/" + vm), 404)
    fault(member.delete("/servers/vm1"), 404)
    r = member.delete("/servers/" + vm)
    check(schemas.delete_server, r)
    assert r.get_data() == b""
    body = check(schemas.get_server, member.get("/servers/" + vm))["server"]
    assert (body["status"], body["OS-EXT-STS:task_state"]) == ("ACTIVE", "deleting")
    compute = app.extensions["mininova"]["vm_service"].compute_rpcapi
    assert [(m, a[:2]) for m, a, _ in compute.calls] == [("terminate_instance", ("node1", vm))]
    check(schemas.delete_server, member.delete("/servers/" + vm))   # again: harmless


def test_delete_of_a_server_not_on_a_host_is_immediate(member, admin, make_vm):
    vm = make_vm("vm1", vm_state="building", task_state="scheduling", host=None)
    check(schemas.delete_server, admin.delete("/servers/" + vm))   # another project's
    fault(member.get("/servers/" + vm), 404)
    fault(member.delete("/servers/" + vm), 404)


def test_a_reader_may_list_but_not_delete(reader, make_vm):
    vm = make_vm("vm1")
    assert ids(reader.get("/servers")) == [vm]
    fault(reader.delete("/servers/" + vm), 403)


def test_update_answers_the_basic_view(member, make_vm):
    vm = make_vm("vm1", vm_state="stopped", power_state="shutdown")
    body = check(schemas.update_server, member.put("/servers/" + vm, {"server": {
        "name": "renamed", "accessIPv4": "192.0.2.9", "accessIPv6": "0::babe:dc0c"}}))
    server = body["server"]
    assert (server["name"], server["accessIPv4"], server["accessIPv6"]) == (
        "renamed", "192.0.2.9", "::babe:dc0c")
    assert not [k for k in server if k.startswith("OS-") and k != "OS-DCF:diskConfig"]
    assert not {"key_name", "security_groups", "config_drive", "progress"} & set(server)
    assert server["addresses"] == {"mininova": [{"version": 4, "addr": "192.168.122.10"}]}
    shown = member.get("/servers/" + vm).get_json()["server"]
    assert (shown["name"], shown["accessIPv4"]) == ("renamed", "192.0.2.9")
    cleared = member.put("/servers/" + vm, {"server": {"accessIPv4": ""}}).get_json()
    assert (cleared["server"]["accessIPv4"], cleared["server"]["name"]) == ("", "renamed")
    unchanged = check(schemas.update_server, member.put("/servers/" + vm, {"server": {}}))
    assert unchanged["server"]["name"] == "renamed"


@pytest.mark.parametrize("body", [
    {}, {"server": {"name": ""}}, {"server": {"name": " x"}}, {"server": {"name": 1}},
    {"server": {"accessIPv4": "1.2.3"}}, {"server": {"accessIPv6": "::g"}},
    {"server": {"description": "2.19"}}, {"server": {"name": "x" * 256}}, {"server": []},
])
def test_update_validation(member, make_vm, body):
    vm = make_vm("vm1")
    fault(member.put("/servers/" + vm, body), 400)
    assert member.get("/servers/" + vm).get_json()["server"]["name"] == "vm1"


def test_update_of_another_projects_server_or_by_name_is_404(member, other, make_vm):
    vm = make_vm("vm1")
    fault(other.put("/servers/" + vm, {"server": {"name": "x"}}), 404)
    fault(member.put("/servers/vm1", {"server": {"name": "x"}}), 404)


def test_update_to_a_taken_name_is_a_409(member, make_vm):
    make_vm("vm1")
    vm2 = make_vm("vm2")
    fault(member.put("/servers/" + vm2, {"server": {"name": "vm1"}}), 409)
