"""Password hashes: scrypt (RFC 7914) from the standard library.

A hash is ``scrypt$<log2 N>$<r>$<p>$<salt>$<key>`` (salt and key in
unpadded urlsafe base64): its own parameters and a 16-byte random salt per
password, so a raised cost applies to new passwords while old ones still
verify. Comparison is constant-time. scrypt over PBKDF2 because it is
memory-hard (32 MiB at the default cost), and over argon2 because it needs
no dependency: hashlib has it whenever Python is built with OpenSSL >= 1.1.
"""
import base64
import binascii
import hashlib
import hmac
import os
import threading

SCHEME = "scrypt"
R, P = 8, 1
SALT_BYTES = 16
KEY_BYTES = 32
MAX_COST = 20          # log2 N; 2**20 * 128 * r bytes = 1 GiB: refuse stored hashes above
MAX_PASSWORD_CHARS = 4096  # as Keystone's [identity] max_password_length


def _b64(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# At most one derivation per CPU at a time: more would finish no sooner, and
# each holds 128 * r * N bytes (32 MiB at cost 15), so a burst of logins (or of
# requests with made-up passwords: they cost the same) queues here instead of
# taking the API's memory.
_RUNNING = threading.BoundedSemaphore(max(1, os.cpu_count() or 1))


def _derive(password, salt, cost, r, p):
    n = 2 ** cost
    with _RUNNING:
        return hashlib.scrypt(password.encode("utf-8", "surrogatepass"), salt=salt, n=n, r=r,
                              p=p, dklen=KEY_BYTES, maxmem=2 * 128 * r * n * p + 2 ** 20)


def hash_password(password, cost):
    """The hash to store for ``password`` (a str), at work factor 2**``cost``."""
    if not isinstance(password, str) or not password:
        raise ValueError("a password is a non-empty string")
    if len(password) > MAX_PASSWORD_CHARS:
        raise ValueError("a password has at most %d characters" % MAX_PASSWORD_CHARS)
    salt = os.urandom(SALT_BYTES)
    key = _derive(password, salt, cost, R, P)
    return "$".join([SCHEME, str(cost), str(R), str(P), _b64(salt), _b64(key)])


def _parse(stored):
    scheme, cost, r, p, salt, key = stored.split("$")
    cost, r, p = int(cost), int(r), int(p)
    if scheme != SCHEME or not (1 <= cost <= MAX_COST and 1 <= r <= 32 and 1 <= p <= 16):
        raise ValueError("unsupported hash parameters")
    return cost, r, p, _unb64(salt), _unb64(key)


def verify(password, stored, dummy_cost):
    """True if ``password`` is the one ``stored`` was made of. When there is
    no hash to check (``stored`` None: an unknown user, or one without a
    password) or it cannot be read, a made-up hash at ``dummy_cost`` (the
    configured cost) is checked instead and the answer is False: the time of
    an answer tells nothing about which case it was."""
    try:
        cost, r, p, salt, key = _parse(stored)
    except (AttributeError, TypeError, ValueError, binascii.Error):
        cost, r, p, salt, key = _parse(_dummy(dummy_cost))
        stored = None
    if not isinstance(password, str) or len(password) > MAX_PASSWORD_CHARS:
        password = ""
    candidate = _derive(password, salt, cost, r, p)
    return hmac.compare_digest(candidate, key) and stored is not None


_dummies = {}
_dummies_lock = threading.Lock()


def _dummy(cost):
    """A hash of a random password, made once per cost."""
    with _dummies_lock:
        if cost not in _dummies:
            _dummies[cost] = hash_password(_b64(os.urandom(16)), cost)
        return _dummies[cost]
