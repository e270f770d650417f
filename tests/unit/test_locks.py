"""common.locks: keyed locks, and try_lock that never waits."""
from common.locks import KeyedLocks


def test_try_lock_holds_a_free_key_and_passes_a_held_one():
    locks = KeyedLocks()
    with locks.try_lock("vm-1") as held:
        assert held
        with locks.try_lock("vm-1") as again:
            assert not again
        with locks.try_lock("vm-2") as other:
            assert other
    with locks.lock("vm-1"):
        with locks.try_lock("vm-1") as held:
            assert not held
    with locks.try_lock("vm-1") as held:
        assert held
    assert not locks._locks  # no key's lock outlives its users
