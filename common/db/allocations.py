"""Allocations: the resources a consumer holds on a host, as Placement's.

A consumer is a VM (its id) or a migration (its uuid); it may hold several
hosts at once (a move holds its source and its destination). A host's
``compute_nodes.*_used`` are the sums of its allocations: every function here
that adds or removes an allocation changes them in the same transaction and
bumps the host's ``generation``. Adding goes through one conditional UPDATE
that checks the room and adds in a single statement, so that concurrent
schedulers cannot over-commit a host (PostgreSQL re-checks the WHERE after
the row lock; SQLite serializes writers).

The statements are built once with bound parameters (the scheduler runs them
for every VM placed).
"""
import collections

import sqlalchemy as sa

from common.db import models
from common.db.models import utcnow

Resources = collections.namedtuple("Resources", "vcpus memory_mb disk_gb")

_ALLOCATIONS = models.Allocation.__table__
_NODES = models.ComputeNode.__table__
A = _ALLOCATIONS.c
N = _NODES.c

_ADD_USAGE = (sa.update(_NODES)
              .where(N.host == sa.bindparam("node_host"),
                     N.vcpus_used + sa.bindparam("need_vcpus")
                     <= N.vcpus * sa.bindparam("cpu_ratio", type_=sa.Float()),
                     N.memory_mb_used + sa.bindparam("need_memory_mb")
                     <= N.memory_mb * sa.bindparam("ram_ratio", type_=sa.Float()),
                     N.local_gb_used + sa.bindparam("need_disk_gb")
                     <= N.local_gb * sa.bindparam("disk_ratio", type_=sa.Float()))
              .values(vcpus_used=N.vcpus_used + sa.bindparam("need_vcpus"),
                      memory_mb_used=N.memory_mb_used + sa.bindparam("need_memory_mb"),
                      local_gb_used=N.local_gb_used + sa.bindparam("need_disk_gb"),
                      generation=N.generation + 1)
              .returning(N.generation))

_SUBTRACT_USAGE = (sa.update(_NODES)
                   .where(N.host == sa.bindparam("node_host"))
                   .values(vcpus_used=N.vcpus_used - sa.bindparam("free_vcpus"),
                           memory_mb_used=N.memory_mb_used - sa.bindparam("free_memory_mb"),
                           local_gb_used=N.local_gb_used - sa.bindparam("free_disk_gb"),
                           generation=N.generation + 1))

_INSERT = sa.insert(_ALLOCATIONS)

_OF_CONSUMER = (sa.select(A.consumer_id, A.host, A.vcpus, A.memory_mb, A.disk_gb)
                .where(A.consumer_id == sa.bindparam("consumer_id"))
                .order_by(A.created_at, A.host))

_HOLDS_ANY = sa.select(A.host).where(A.consumer_id == sa.bindparam("consumer_id")).limit(1)

_DELETE = (sa.delete(_ALLOCATIONS)
           .where(A.consumer_id == sa.bindparam("consumer_id"))
           .returning(A.host, A.vcpus, A.memory_mb, A.disk_gb))

_DELETE_ON_HOST = (sa.delete(_ALLOCATIONS)
                   .where(A.consumer_id == sa.bindparam("consumer_id"),
                          A.host == sa.bindparam("alloc_host"))
                   .returning(A.host, A.vcpus, A.memory_mb, A.disk_gb))

_DELETE_OF_INSTANCE = (
    sa.delete(_ALLOCATIONS)
    .where(sa.or_(A.consumer_id == sa.bindparam("instance_id"),
                  A.consumer_id.in_(sa.select(models.Migration.__table__.c.uuid).where(
                      models.Migration.__table__.c.instance_id == sa.bindparam("instance_id")))))
    .returning(A.host, A.vcpus, A.memory_mb, A.disk_gb))

_MOVE = (sa.update(_ALLOCATIONS)
         .where(A.consumer_id == sa.bindparam("from_consumer"))
         .values(consumer_id=sa.bindparam("to_consumer")))


def allocate(s, consumer_id, host, resources, ratios):
    """Hold ``resources`` (a Resources) on ``host`` for ``consumer_id`` if
    they fit under the allocation ``ratios`` (cpu, ram, disk).

    Returns the host's new generation (a true value) if they fit, else None.
    A consumer may hold several hosts; allocating twice on one host for one
    consumer is an IntegrityError (the caller checks ``holds_any`` first)."""
    cpu_ratio, ram_ratio, disk_ratio = ratios
    generation = s.execute(_ADD_USAGE, {
        "node_host": host, "need_vcpus": resources.vcpus,
        "need_memory_mb": resources.memory_mb, "need_disk_gb": resources.disk_gb,
        "cpu_ratio": float(cpu_ratio), "ram_ratio": float(ram_ratio),
        "disk_ratio": float(disk_ratio)}).scalar()
    if generation is None:
        return None
    s.execute(_INSERT, {"consumer_id": consumer_id, "host": host, "vcpus": resources.vcpus,
                        "memory_mb": resources.memory_mb, "disk_gb": resources.disk_gb,
                        "created_at": utcnow()})
    return generation


def of_consumer(s, consumer_id):
    """The consumer's allocations, rows (consumer_id, host, vcpus,
    memory_mb, disk_gb), oldest first; [] if it holds nothing."""
    return s.execute(_OF_CONSUMER, {"consumer_id": consumer_id}).all()


def on_host(s, consumer_id, host):
    """The consumer's allocation on ``host``, or None."""
    return next((a for a in of_consumer(s, consumer_id) if a.host == host), None)


def holds_any(s, consumer_id):
    return s.execute(_HOLDS_ANY, {"consumer_id": consumer_id}).first() is not None


def _subtract(s, released):
    for host, vcpus, memory_mb, disk_gb in released:
        s.execute(_SUBTRACT_USAGE, {"node_host": host, "free_vcpus": vcpus,
                                    "free_memory_mb": memory_mb, "free_disk_gb": disk_gb})
    return len(released)


def release(s, consumer_id):
    """Free every allocation of the consumer; how many there were (0 when
    it held nothing: idempotent)."""
    return _subtract(s, s.execute(_DELETE, {"consumer_id": consumer_id}).all())


def release_instance(s, instance_id):
    """Free what a VM and its migration records hold, on any host (a
    delete); how many allocations there were."""
    return _subtract(s, s.execute(_DELETE_OF_INSTANCE, {"instance_id": instance_id}).all())


def release_on_host(s, consumer_id, host):
    """Free the consumer's allocation on ``host`` only (e.g. a move's source
    once confirmed); True if there was one."""
    return _subtract(s, s.execute(_DELETE_ON_HOST, {"consumer_id": consumer_id,
                                                    "alloc_host": host}).all()) == 1


def move_allocations(s, from_consumer, to_consumer):
    """Hand every allocation of ``from_consumer`` to ``to_consumer`` (what a
    move does with the VM's source allocation: its migration record holds it
    while the VM allocates the destination). The hosts' sums do not change,
    so neither do their generations. Returns how many moved; an
    IntegrityError if ``to_consumer`` already holds one of those hosts."""
    return s.execute(_MOVE, {"from_consumer": from_consumer,
                             "to_consumer": to_consumer}).rowcount


def usage_by_host(s, hosts):
    """{host: Resources} summed from the allocations on each of ``hosts``
    (zeros for a host without any): what its ``*_used`` must be."""
    rows = s.execute(sa.select(A.host, sa.func.sum(A.vcpus), sa.func.sum(A.memory_mb),
                               sa.func.sum(A.disk_gb))
                     .where(A.host.in_(list(hosts))).group_by(A.host)).all()
    sums = {host: Resources(int(v), int(m), int(d)) for host, v, m, d in rows}
    return {host: sums.get(host, Resources(0, 0, 0)) for host in hosts}


def set_usage(s, host, usage):
    """Set a host's ``*_used`` to ``usage`` (a Resources; the audit's
    repair, with the host's row locked), bumping its generation."""
    s.execute(sa.update(_NODES).where(N.host == host)
              .values(vcpus_used=usage.vcpus, memory_mb_used=usage.memory_mb,
                      local_gb_used=usage.disk_gb, generation=N.generation + 1))


def all_allocations(s):
    """Every allocation, rows (consumer_id, host, vcpus, memory_mb, disk_gb)."""
    return s.execute(sa.select(A.consumer_id, A.host, A.vcpus, A.memory_mb,
                               A.disk_gb)).all()
