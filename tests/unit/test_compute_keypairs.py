"""Keypairs on the compute surface at 2.1: import (tempest's ecdsa, OSC's
ed25519) or generate, Nova's fingerprint, exact shapes and 2.1 codes, per
user, names and keys checked, the key_pairs quota; and the lookup a server
create uses."""
import base64
import hashlib

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from common import exception
from common.db import keypairs as db_keypairs
from common.db import quota_sets
from tests.unit.compute_surface import (  # noqa: F401  (fixtures)
    admin, app, fault, member, other, reader)


def public_key(private):
    return private.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                             serialization.PublicFormat.OpenSSH).decode()


ECDSA = public_key(ec.generate_private_key(ec.SECP384R1())) + " tempest"
ED25519 = public_key(ed25519.Ed25519PrivateKey.generate())


def nova_fingerprint(key):
    digest = hashlib.md5(base64.b64decode(key.split()[1])).hexdigest()
    return ":".join(digest[i:i + 2] for i in range(0, 32, 2))


def create(caller, name, key=None):
    body = {"name": name}
    if key is not None:
        body["public_key"] = key
    return caller.post("/os-keypairs", {"keypair": body})


@pytest.mark.parametrize("key", [ECDSA, ED25519])
def test_import_list_show_delete(member, key):
    r = create(member, "kp 1", key)
    assert r.status_code == 200, r.get_data(as_text=True)
    created = r.get_json()["keypair"]
    assert set(created) == {"name", "public_key", "fingerprint", "user_id"}
    assert created["fingerprint"] == nova_fingerprint(key) and created["public_key"] == key
    listed = member.get("/os-keypairs").get_json()
    del created["user_id"]
    assert listed == {"keypairs": [{"keypair": created}]}
    shown = member.get("/os-keypairs/kp 1").get_json()["keypair"]
    assert set(shown) == {"name", "public_key", "fingerprint", "user_id", "deleted",
                          "created_at", "updated_at", "deleted_at", "id"}
    assert shown["deleted"] is False and shown["updated_at"] is None
    assert isinstance(shown["id"], int) and "Z" not in shown["created_at"]
    r = member.delete("/os-keypairs/kp 1")
    assert r.status_code == 202 and r.get_data() == b""
    fault(member.get("/os-keypairs/kp 1"), 404)
    fault(member.delete("/os-keypairs/kp 1"), 404)


def test_generated_pair_shows_its_private_key_once(member):
    r = create(member, "gen")
    keypair = r.get_json()["keypair"]
    assert keypair["private_key"].startswith("-----BEGIN RSA PRIVATE KEY-----")
    private = serialization.load_pem_private_key(keypair["private_key"].encode(), None)
    assert keypair["public_key"].startswith(public_key(private))
    assert keypair["fingerprint"] == nova_fingerprint(keypair["public_key"])
    assert "private_key" not in member.get("/os-keypairs/gen").get_json()["keypair"]


def test_keypairs_belong_to_their_user(db, member, other):
    create(member, "mine", ED25519)
    assert other.get("/os-keypairs").get_json() == {"keypairs": []}
    fault(other.get("/os-keypairs/mine"), 404)
    fault(other.delete("/os-keypairs/mine"), 404)
    assert create(other, "mine", ED25519).status_code == 200   # names are per user
    assert "already exists" in fault(create(member, "mine", ECDSA), 409)


@pytest.mark.parametrize("name", ["", " ", " lead", "trail ", "a/b", "x" * 256, "é", "a.b"])
def test_bad_names(member, name):
    assert "keypair.name" in fault(create(member, name, ED25519), 400)


@pytest.mark.parametrize("key", ["", "ssh-rsa", "ssh-rsa " + "A" * 2048, "not a key",
                                 "ssh-rsa AAAA%%%%", ED25519.replace("AAAA", "BBBB", 1)])
def test_bad_keys(member, key):
    assert "Keypair data is invalid" in fault(create(member, "k", key), 400)


def test_bad_bodies(member, reader):
    fault(member.post("/os-keypairs", {"keypair": {"name": "k", "type": "ssh"}}), 400)
    fault(member.post("/os-keypairs", {"name": "k"}), 400)
    fault(member.post("/os-keypairs", {"keypair": {"name": "k", "public_key": 1}}), 400)
    fault(create(reader, "k", ED25519), 403)


def test_the_key_pairs_quota(db, member):
    with db.transaction() as s:
        quota_sets.project_set(s, "p1", {"key_pairs": 1})
    assert create(member, "one", ED25519).status_code == 200
    assert "key_pairs" in fault(create(member, "two", ED25519), 403)


def test_a_server_create_finds_the_public_key(db, member):
    user_id = create(member, "boot", ED25519).get_json()["keypair"]["user_id"]
    with db.transaction() as s:
        assert db_keypairs.public_key(s, user_id, "boot") == ED25519
        with pytest.raises(exception.KeypairNotFound):
            db_keypairs.public_key(s, user_id, "nope")
