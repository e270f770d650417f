"""``mininova vm list`` follows the API's "next" links: it lists every VM
however small the API's [api] max_limit (the CLI runs as a real process
against the real app served over loopback, as in test_cli)."""
import json

import pytest

from tests.unit.test_cli import run, served_cloud


@pytest.fixture
def cloud(conf, db, image):
    conf.set_override("max_limit", 2, group="api")
    with served_cloud(conf, db) as fake:
        yield fake


def test_vm_list_follows_next_links(cloud):
    names = ["p%d" % i for i in range(5)]
    for name in names:
        r = run("vm", "create", name, "--image", "blank", "--flavor", "m1.tiny", cloud=cloud)
        assert r.code == 0, r
    r = run("-f", "json", "vm", "list", cloud=cloud)
    assert r.code == 0, r
    assert sorted(vm["name"] for vm in json.loads(r.out)["vms"]) == names
    r = run("vm", "list", cloud=cloud)
    assert r.code == 0 and all(name in r.out for name in names), r
