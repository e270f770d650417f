"""SSH public keys as Nova handles them: checked by parsing (``cryptography``
reads every OpenSSH key type clients generate: rsa, ecdsa, ed25519), named by
Nova's fingerprint (the colon-separated MD5 of the key blob), and a key pair
generated for the clients that ask the server for one."""
import base64
import binascii
import hashlib

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from common import exception

# Longer than any OpenSSH public key line (a 16384-bit RSA key is ~2.8 KB).
MAX_PUBLIC_KEY_LENGTH = 16384


def fingerprint(public_key):
    """Nova's fingerprint of an OpenSSH public key line, e.g.
    ``"1e:2c:...:9f"``; InvalidKeypair (400) if it is no such key."""
    try:
        if len(public_key) > MAX_PUBLIC_KEY_LENGTH:
            raise ValueError("too long")
        data = public_key.encode("utf-8")
        serialization.load_ssh_public_key(data)
        blob = base64.b64decode(data.split()[1], validate=True)
    except (ValueError, TypeError, IndexError, UnicodeError, binascii.Error,
            UnsupportedAlgorithm) as e:
        raise exception.InvalidKeypair(reason="failed to generate fingerprint") from e
    digest = hashlib.md5(blob, usedforsecurity=False).hexdigest()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def generate(comment):
    """A new key pair as Nova makes it: (private key, OpenSSH public key
    line ending in ``comment``). RSA 2048 in the traditional PEM form, which
    every SSH client reads."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption()).decode("ascii")
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode("ascii")
    return private, "%s %s" % (public, comment)
