"""What the tests need from the machine, and what happens when it is missing.

The README's test command (`make test`) sets MININOVA_REQUIRE_RABBIT and
MININOVA_REQUIRE_LIBVIRT: then nothing may skip, and a missing prerequisite is
a failure with its reason (tests/conftest.py turns any skip into one). Run by
hand without them (one file, on a laptop), the same tests skip with that reason.
"""
import os

import pytest

FLAGS = ("MININOVA_REQUIRE_RABBIT", "MININOVA_REQUIRE_LIBVIRT")
TRUE = {"1", "true", "yes", "on"}


def flag(name):
    """The one parser of the MININOVA_REQUIRE_* flags: 1/true/yes/on."""
    return os.environ.get(name, "").strip().lower() in TRUE


def strict():
    """True under `make test`: every test must run."""
    return any(flag(name) for name in FLAGS)


def require(ok, reason):
    """Fail (under `make test`) or skip (by hand) unless ``ok``."""
    if not ok:
        if strict():
            pytest.fail("missing prerequisite: %s" % reason, pytrace=False)
        pytest.skip(reason)


def require_root(why):
    require(os.geteuid() == 0, "needs root (%s): run `make test` as root or with sudo" % why)
