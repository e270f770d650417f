"""``POST /v1/vms/<ref>/action {"rebuild": ...}`` and ``mininova vm rebuild
NAME [--image I] [--name N] --wait`` against the real app (tests/unit/
test_cli.py's served cloud; the compute's side is played by a thread that
reports the rebuild done)."""
import json
import re
import urllib.error
import urllib.request

import pytest

from tests.unit.test_cli import REQ, run, served_cloud


@pytest.fixture
def cloud(conf, db, image):
    with served_cloud(conf, db) as fake:
        def rebuild_instance(ctxt, host, instance_id, image):
            fake.calls.append(("rebuild_instance", instance_id, image["id"]))
            fake._later(fake._power, ctxt, host, instance_id, "rebuild_instance")
        fake.rebuild_instance = rebuild_instance
        yield fake


def test_rebuild_wait_from_its_own_image_and_renamed(cloud):
    assert run("vm", "create", "web1", "--image", "blank", "--flavor", "m1.tiny", "--wait",
               cloud=cloud).code == 0
    r = run("vm", "rebuild", "web1", "--name", "web1b", "--wait", cloud=cloud)
    assert r.code == 0, r
    assert r.out.startswith("VM web1b is ACTIVE, rebuilt from image "), r
    assert "REBUILD (rebuilding)" in r.err, r
    assert cloud.calls[-1][0] == "rebuild_instance"
    r = run("vm", "rebuild", "web1b", "--image", "blank", cloud=cloud)  # no --wait
    assert r.code == 0 and re.fullmatch(r"Request to rebuild VM web1b accepted %s\.\n"
                                        % REQ, r.out), r


def test_rebuild_refusals_name_what_is_wrong(cloud):
    assert run("vm", "create", "web2", "--image", "blank", "--flavor", "m1.tiny", "--wait",
               cloud=cloud).code == 0
    r = run("vm", "rebuild", "web2", "--image", "no-such-image", cloud=cloud)
    assert r.code == 1 and "error 404" in r.err and "no-such-image" in r.err, r
    r = run("vm", "pause", "web2", "--wait", cloud=cloud)
    assert r.code == 0, r
    r = run("vm", "rebuild", "web2", cloud=cloud)  # paused: not a state to rebuild from
    assert r.code == 1 and "error 409" in r.err and "PAUSED" in r.err, r


def test_malformed_rebuild_bodies_are_400(cloud):
    assert run("vm", "create", "web3", "--image", "blank", "--flavor", "m1.tiny", "--wait",
               cloud=cloud).code == 0
    for body in ({"rebuild": {}}, {"rebuild": {"image": "blank", "flavor": "x"}},
                 {"rebuild": {"image": 7}}, {"rebuild": {"image": "blank", "name": ""}}):
        req = urllib.request.Request(
            "%s/v1/vms/web3/action" % cloud.url, data=json.dumps(body).encode(),
            method="POST", headers={"X-Auth-Token": cloud.token,
                                    "Content-Type": "application/json"})
        try:
            urllib.request.urlopen(req, timeout=10)
            raise AssertionError("accepted %r" % body)
        except urllib.error.HTTPError as e:
            assert e.code == 400, (body, e.code)
            assert "rebuild" in e.read().decode(), body
