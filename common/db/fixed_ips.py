"""Fixed IPv4 addresses of VMs, allocated in the database before they boot.

One row per address of a network that was ever handed out: held by a VM
(``instance_id`` set) or free again (``instance_id`` NULL, ``released_at``
when). The primary key (network, address) means an address exists once per
network; the unique (network, instance_id) that a VM holds at most one
address per network (free rows, NULL, never collide).

Allocation never reads-then-writes without a guard, so concurrent allocators
(several conductors, any number of hosts) cannot hand out one address twice,
on PostgreSQL and SQLite alike:
- a never-used address is taken with INSERT ... ON CONFLICT DO NOTHING: of
  two inserts of one address one inserts, the other (on PostgreSQL after
  waiting for the first to commit) inserts nothing and tries the next;
- a free row is taken with UPDATE ... WHERE instance_id IS NULL: PostgreSQL
  re-checks the WHERE after the row lock, so the second UPDATE matches nothing.
Never-used addresses go first, then the one free the longest: an address
comes back only after the whole range has been used, by which time the
network's DHCP server has long forgotten the lease of its previous VM.
"""
import ipaddress

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from common import exception
from common.db.models import FixedIp, utcnow

_T = FixedIp.__table__
C = _T.c


def _insert(s):
    return postgresql.insert if s.get_bind().dialect.name == "postgresql" else sqlite.insert


def address_of(s, network_name, instance_id):
    """The address ``instance_id`` holds in ``network_name``, or None."""
    return s.execute(sa.select(C.address).where(
        C.network == network_name, C.instance_id == instance_id)).scalar()


def allocate(s, network, instance_id, host):
    """The address of ``network`` (a FixedNetwork) that ``instance_id`` holds,
    allocating one if it holds none (idempotent: a repeated build gets the
    same address), unless the address it holds is now one the network says
    is ``taken``: then it moves to another. NoMoreFixedIps when every address
    of the range is held."""
    first, last = network.bounds()
    reserved = network.reserved()
    size = last - first + 1
    for _attempt in range(size + 1):  # each miss means another allocator won one
        held = address_of(s, network.name, instance_id)
        if held is not None and held not in network.taken:
            return held
        if held is not None:  # given to another MAC on the network meanwhile
            s.execute(sa.update(_T).where(C.network == network.name, C.address == held)
                      .values(instance_id=None, host=None, released_at=utcnow()))
        now = utcnow()
        known = {int(ipaddress.IPv4Address(a)) for a in s.execute(
            sa.select(C.address).where(C.network == network.name)).scalars()}
        fresh = next((i for i in range(first, last + 1)
                      if i not in known and i not in reserved), None)
        if fresh is not None:
            address = str(ipaddress.IPv4Address(fresh))
            done = s.execute(_insert(s)(_T).values(
                network=network.name, address=address, instance_id=instance_id, host=host,
                allocated_at=now, released_at=None).on_conflict_do_nothing()).rowcount
        else:
            address = _longest_free(s, network.name, first, last, reserved)
            if address is None:
                raise exception.NoMoreFixedIps(network=network.name)
            done = s.execute(sa.update(_T).where(
                C.network == network.name, C.address == address, C.instance_id.is_(None))
                .values(instance_id=instance_id, host=host, allocated_at=now)).rowcount
        if done == 1:
            return address
    raise exception.NoMoreFixedIps(network=network.name)


def _longest_free(s, network_name, first, last, reserved):
    rows = s.execute(sa.select(C.address).where(
        C.network == network_name, C.instance_id.is_(None))
        .order_by(C.released_at, C.address)).scalars()
    for address in rows:
        value = int(ipaddress.IPv4Address(address))
        if first <= value <= last and value not in reserved:
            return address
    return None


def release_instance(s, instance_id):
    """Free every address ``instance_id`` holds; [(network, address)] freed.
    Idempotent."""
    freed = s.execute(sa.select(C.network, C.address).where(
        C.instance_id == instance_id)).all()
    if freed:
        s.execute(sa.update(_T).where(C.instance_id == instance_id).values(
            instance_id=None, host=None, released_at=utcnow()))
    return [tuple(row) for row in freed]


def held(s, network_name=None):
    """{address: instance_id} of the held addresses (of one network)."""
    query = sa.select(C.address, C.instance_id).where(C.instance_id.is_not(None))
    if network_name is not None:
        query = query.where(C.network == network_name)
    return dict(s.execute(query).all())


def held_rows(s):
    """[(network, address, instance_id)] of every held address."""
    return [tuple(row) for row in s.execute(
        sa.select(C.network, C.address, C.instance_id).where(C.instance_id.is_not(None))
        .order_by(C.network, C.address)).all()]
