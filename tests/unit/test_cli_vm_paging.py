"""``mininova vm list`` follows the API's "next" links: it lists every VM
however small the API's [api] max_limit (the CLI runs as a real process
against the real app served over loopback, as in test_cli)."""
import json
import threading

import pytest
from werkzeug.serving import make_server

from nova_api.app import create_app
from tests.unit.conftest import token_for
from tests.unit.test_cli import FakeCloud, run


@pytest.fixture
def cloud(conf, db, image):
    conf.set_override("max_limit", 2, group="api")
    fake = FakeCloud(db)
    server = make_server("127.0.0.1", 0, create_app(conf, db, fake, fake), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = "http://127.0.0.1:%d" % server.server_port
    fake.token = token_for(db, "default", "admin")
    yield fake
    server.shutdown()
    thread.join(5)
    for t in fake.threads:
        t.join(5)


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
