"""Password hashes: a real KDF (scrypt) with a salt per password, its
parameters stored with it, and answers that do not depend on whether there
was a hash to check."""
import pytest

from common import passwords

COST = 10  # the tests' cost: 1 MiB, a few ms


def test_a_hash_verifies_its_password_and_no_other():
    stored = passwords.hash_password("correct horse", COST)
    assert passwords.verify("correct horse", stored, COST)
    for wrong in ("correct horse ", "Correct horse", "", "correct hors", "x" * 5000, None):
        assert not passwords.verify(wrong, stored, COST)


def test_the_hash_holds_its_parameters_and_a_fresh_salt_not_the_password():
    one, two = (passwords.hash_password("hunter2-secret", COST) for _ in range(2))
    assert one != two and one.split("$")[4] != two.split("$")[4]  # a salt per hash
    scheme, cost, r, p, salt, key = one.split("$")
    assert (scheme, cost, r, p) == ("scrypt", str(COST), "8", "1")
    assert len(passwords._unb64(salt)) == 16 and len(passwords._unb64(key)) == 32
    assert "hunter2" not in one


def test_a_hash_made_at_another_cost_still_verifies():
    old = passwords.hash_password("p", 11)
    assert passwords.verify("p", old, dummy_cost=COST)


@pytest.mark.parametrize("stored", [None, "", "plain", "md5$abc", "scrypt$99$8$1$a$b",
                                    "scrypt$10$8$1$!!$??", "scrypt$x$8$1$a$b"])
def test_a_missing_or_unreadable_hash_never_verifies(stored):
    assert passwords.verify("p", stored, COST) is False


def test_unicode_passwords():
    stored = passwords.hash_password("pässwörd 名前 \U0001F600", COST)
    assert passwords.verify("pässwörd 名前 \U0001F600", stored, COST)
    assert not passwords.verify("passwort 名前 \U0001F600", stored, COST)


@pytest.mark.parametrize("bad", ["", None, "x" * (passwords.MAX_PASSWORD_CHARS + 1)])
def test_what_cannot_be_a_password(bad):
    with pytest.raises(ValueError):
        passwords.hash_password(bad, COST)
