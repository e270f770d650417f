"""Users' SSH keypairs: named uniquely per user, seen only by their user
(another user's keypair does not exist for them), counted against the
project's ``key_pairs`` quota per user.

``public_key(s, user_id, name)`` is what a server create with ``key_name``
uses: the key then travels in the build's payload to the VM's config drive."""
import sqlalchemy as sa
from sqlalchemy import exc

from common import exception, ssh_keys
from common.db import quota_sets
from common.db.models import KeyPair, utcnow


def create(s, user_id, project_id, name, public_key, quota_defaults):
    """Store ``public_key`` (an OpenSSH public key line, checked and
    fingerprinted) as ``name``; KeypairExists (409) if the user has one by
    that name, QuotaExceeded (403) past the ``key_pairs`` limit."""
    fingerprint = ssh_keys.fingerprint(public_key)
    if s.scalars(sa.select(KeyPair.id).where(KeyPair.user_id == user_id,
                                             KeyPair.name == name)).first() is not None:
        raise exception.KeypairExists(name=name)
    quota_sets.check_room(s, "key_pairs", quota_sets.keypair_count(s, user_id), project_id,
                          quota_defaults)
    keypair = KeyPair(user_id=user_id, name=name, fingerprint=fingerprint,
                      public_key=public_key, created_at=utcnow())
    try:
        with s.begin_nested():
            s.add(keypair)
    except exc.IntegrityError as e:  # a concurrent create of the same name won
        raise exception.KeypairExists(name=name) from e
    return keypair


def get(s, user_id, name):
    keypair = s.scalars(sa.select(KeyPair).where(KeyPair.user_id == user_id,
                                                 KeyPair.name == name)).first()
    if keypair is None:
        raise exception.KeypairNotFound(name=name, user=user_id)
    return keypair


def public_key(s, user_id, name):
    """The public key of the user's keypair ``name`` (KeypairNotFound, 404,
    if the user has none by that name)."""
    return get(s, user_id, name).public_key


def user_list(s, user_id):
    return s.scalars(sa.select(KeyPair).where(KeyPair.user_id == user_id)
                     .order_by(KeyPair.name)).all()


def delete(s, user_id, name):
    removed = s.execute(sa.delete(KeyPair).where(KeyPair.user_id == user_id,
                                                 KeyPair.name == name)
                        .execution_options(synchronize_session=False)).rowcount
    if not removed:
        raise exception.KeypairNotFound(name=name, user=user_id)
