"""vhost.Host's pool of lent connections, on libvirt's test driver
(test:///default: one in-memory host shared by the process's connections)."""
import threading
import uuid

import pytest

from common import states
from nova_compute.virt import driver as virt_driver
from nova_compute.virt import fake_libvirt
from nova_compute.virt.libvirt import host as vhost
from tests.unit.test_virt_fake_libvirt import make_conf

URI = "test:///default"


@pytest.fixture
def make_host():
    hosts = []

    def make(pool_size):
        host = vhost.Host(URI, pool_size=pool_size)
        hosts.append(host)
        return host

    yield make
    for host in hosts:
        host.close()


def test_borrowed_connection_is_not_the_main_one_and_comes_back(make_host):
    host = make_host(pool_size=2)
    main = host.get_connection()
    with host.borrowed_connection() as conn:
        assert conn is not main
        assert host.get_connection() is conn          # this thread's calls go there
        with host.borrowed_connection() as inner:     # nested: the same one
            assert inner is conn
        assert host.get_connection() is conn
        assert conn.getType() == "TEST"
    assert host.get_connection() is main
    with host.borrowed_connection() as again:         # reused, not reopened
        assert again is conn


def test_threads_borrow_their_own_and_share_the_main_one_beyond_the_pool(make_host):
    host = make_host(pool_size=2)
    main = host.get_connection()
    inside = threading.Barrier(3)
    seen = [None] * 3

    def borrow(i):
        with host.borrowed_connection() as conn:
            seen[i] = conn
            inside.wait(timeout=10)   # all three hold theirs at once
            seen[i].listAllDomains(0)

    threads = [threading.Thread(target=borrow, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert not any(t.is_alive() for t in threads)
    assert len({id(c) for c in seen}) == 3
    assert sum(c is main for c in seen) == 1          # the pool holds 2
    assert host._lent == 0 and len(host._idle) == 2


def test_fill_pool_opens_them_all_up_front(make_host):
    host = make_host(pool_size=3)
    host.fill_pool()
    opened = list(host._idle)
    assert len(opened) == 3 and all(c.isAlive() == 1 for c in opened)
    with host.borrowed_connection() as conn:
        assert any(conn is c for c in opened)
        host.fill_pool()                              # counts the lent one too
        assert len(host._idle) == 2


def test_pool_off_lends_the_main_connection(make_host):
    host = make_host(pool_size=0)
    with host.borrowed_connection() as conn:
        assert conn is host.get_connection()
    assert host._idle == []


def test_dead_pooled_connection_is_replaced(make_host):
    host = make_host(pool_size=1)
    with host.borrowed_connection() as first:
        pass
    first.close()                       # as if libvirtd restarted meanwhile
    with host.borrowed_connection() as second:
        assert second is not first
        assert second.isAlive() == 1
    assert host._idle == [second]


def test_close_closes_the_idle_pooled_connections(make_host):
    host = make_host(pool_size=1)
    host.get_connection()
    with host.borrowed_connection() as conn:
        pass
    host.close()
    assert host._idle == [] and host._conn is None
    with pytest.raises(vhost.libvirt.libvirtError):
        conn.getType()


class PooledFakeDriver(fake_libvirt.FakeLibvirtDriver):
    """The fake driver with a pool of 2 lent connections (test:///default)."""

    def _connection_pool_size(self, conf):
        return 2

    def _launch_domain(self, dom):
        self.launched_on.append(dom.connect())
        super()._launch_domain(dom)


def test_concurrent_spawns_use_pooled_connections(tmp_path):
    drv = PooledFakeDriver(make_conf(tmp_path))
    drv.launched_on = []
    drv.init_host("compute-pool")
    base = tmp_path / "base.img"
    base.write_bytes(b"base")
    specs = [virt_driver.InstanceSpec(id=str(uuid.uuid4()), name="vm%d" % i, vcpus=1,
                                      memory_mb=64, root_gb=1, image_id="img",
                                      project_id="proj") for i in range(6)]
    try:
        threads = [threading.Thread(target=drv.spawn, args=(s, str(base))) for s in specs]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert sorted(i["id"] for i in drv.list_instances()) == sorted(s.id for s in specs)
        assert len(drv.launched_on) == 6
        assert any(c is not drv._host._conn for c in drv.launched_on)  # a lent one
        assert drv._host._lent == 0 and 1 <= len(drv._host._idle) <= 2
        for s in specs:
            assert drv.get_info(s.id)["power_state"] == states.RUNNING
            drv.power_off(s.id)
            drv.destroy(s.id)
        assert drv.list_instances() == []
    finally:
        for inst in drv.list_instances():
            drv.destroy(inst["id"])
        drv.cleanup_host()
