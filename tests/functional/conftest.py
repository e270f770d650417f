import os
import uuid

import pytest

from common.db import migration
from common.db.session import Database
from mininova_lab import services
from mininova_lab.private_services import PgCluster, RabbitNode
from mininova_lab.stack import Stack, qemu_img_create, virsh


@pytest.fixture
def pg_db():
    """A private, migrated PostgreSQL database for one test."""
    name = "mininova_t_" + uuid.uuid4().hex[:8]
    services.create_database(name)
    url = services.db_url(name)
    db = None
    try:
        migration.db_sync(url)
        db = Database(url)
        yield db
    finally:
        if db is not None:
            db.dispose()
        services.drop_database(name)


@pytest.fixture
def rabbit_node():
    """A RabbitMQ node of this test's own, to stop, kill and start."""
    node = RabbitNode()
    try:
        yield node.create()
    finally:
        node.destroy()


@pytest.fixture
def pg_cluster():
    """A PostgreSQL cluster of this test's own, to stop, kill and start."""
    cluster = PgCluster()
    try:
        yield cluster.create()
    finally:
        cluster.destroy()


def libvirt_available():
    return virsh("version").returncode == 0


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """One real stack (three daemons, RabbitMQ, PostgreSQL, libvirtd) for the session."""
    if not libvirt_available():
        pytest.fail("libvirtd (qemu:///system) is not reachable: run `make test`, "
                    "which installs and starts it")
    s = Stack(tmp_path_factory.mktemp("stack")).start()
    base = os.path.join(s.workdir, "blank.qcow2")
    qemu_img_create(base, "1G")
    s.image = s.add_image("blank", base)
    tiny = os.environ.get("MININOVA_TINY_IMAGE", "/var/cache/mininova/tiny.qcow2")
    if not os.path.exists(tiny):
        pytest.fail("%s is missing: run `make test`, which builds it "
                    "(deploy/build-tiny-image.sh)" % tiny)
    s.tiny = s.add_image("tiny", tiny)
    try:
        yield s
    finally:
        s.delete_all_vms()
        s.stop()
