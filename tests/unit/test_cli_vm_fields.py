"""``mininova vm create`` with --key-name, --user-data FILE and --property,
and ``mininova vm rename`` (the CLI as a real process against the real app
over loopback, as in test_cli)."""
import base64

from common.db import api as db_api
from common.db import instance_metadata
from tests.unit.test_cli import cloud, fields, run  # noqa: F401 (fixture)


def test_create_with_user_data_and_properties_then_rename(cloud, db, tmp_path):
    script = tmp_path / "init.sh"
    script.write_bytes(b"#!/bin/sh\necho hello\n")
    r = run("vm", "create", "web1", "--image", "blank", "--flavor", "m1.tiny",
            "--user-data", str(script), "--property", "role=web", "--property", "a=b=c",
            cloud=cloud)
    assert r.code == 0, r
    vm_id = fields(r.out)["id"]
    with db.transaction() as s:
        row = db_api.instance_get(s, vm_id)
        assert base64.b64decode(row.user_data) == b"#!/bin/sh\necho hello\n"
        assert instance_metadata.get(s, vm_id) == {"role": "web", "a": "b=c"}
    r = run("vm", "rename", "web1", "web2", cloud=cloud)
    assert r.code == 0 and fields(r.out)["name"] == "web2", r
    assert run("vm", "show", "web1", cloud=cloud).code == 1


def test_create_refusals_name_what_was_wrong(cloud, tmp_path):
    base = ("vm", "create", "web1", "--image", "blank", "--flavor", "m1.tiny")
    r = run(*base, "--key-name", "nokey", cloud=cloud)
    assert r.code == 1 and "nokey" in r.err, r
    r = run(*base, "--property", "novalue", cloud=cloud)
    assert r.code == 2 and "KEY=VALUE" in r.err, r
    r = run(*base, "--user-data", str(tmp_path / "missing"), cloud=cloud)
    assert r.code == 2 and "missing" in r.err, r
