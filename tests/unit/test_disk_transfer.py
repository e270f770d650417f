"""The destination's fetch of a disk another host set aside
(nova_compute/virt/libvirt/disk_transfer.py and LibvirtBase._fetch_disk),
on libvirt's test driver: what is written, what a failure leaves (nothing).
The real download, from a real libvirtd, is in
tests/functional/test_virt_libvirt_disk_transfer.py."""
import os
import uuid
import xml.etree.ElementTree as ET

import libvirt
import pytest

from common import exception
from nova_compute.virt import fake_libvirt
from nova_compute.virt.libvirt import disk_transfer
from tests.unit.test_virt_fake_libvirt import make_conf


def test_the_pool_xml_names_the_directory_escaped():
    xml = disk_transfer.pool_xml("mininova-moving-x", "/srv/a&b <c>/x_resize")
    pool = ET.fromstring(xml)
    assert pool.get("type") == "dir" and pool.findtext("name") == "mininova-moving-x"
    assert pool.findtext("target/path") == "/srv/a&b <c>/x_resize"


def test_the_sink_writes_data_and_leaves_holes(tmp_path):
    target = tmp_path / "out"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        sink = disk_transfer.Sink(fd)
        sink.data(None, b"head", None)
        sink.hole(None, 1 << 20, None)
        sink.data(None, b"tail", None)
    finally:
        os.close(fd)
    data = target.read_bytes()
    assert sink.received == len(data) == 8 + (1 << 20)
    assert data[:4] == b"head" and data[-4:] == b"tail" and set(data[4:-4]) == {0}


def test_a_failed_download_leaves_no_file_and_no_pool(tmp_path):
    source = tmp_path / "src_resize"
    source.mkdir()
    (source / "disk").write_bytes(b"x" * 100)
    target = tmp_path / "disk.part"
    instance_id = str(uuid.uuid4())
    with pytest.raises(libvirt.libvirtError):  # the test driver serves no file of a dir
        disk_transfer.download("test:///default", instance_id, str(source), "disk",
                               str(target), 100)
    assert not target.exists() and (source / "disk").read_bytes() == b"x" * 100
    conn = libvirt.open("test:///default")
    try:
        names = conn.listStoragePools() + conn.listDefinedStoragePools()
    finally:
        conn.close()
    assert disk_transfer.pool_name(instance_id) not in names


def test_a_download_never_overwrites_a_file(tmp_path):
    target = tmp_path / "disk.part"
    target.write_bytes(b"mine")
    with pytest.raises(FileExistsError):
        disk_transfer.download("test:///default", str(uuid.uuid4()), str(tmp_path), "disk",
                               str(target), 4)
    assert target.read_bytes() == b"mine"


@pytest.fixture
def drv(tmp_path):
    d = fake_libvirt.FakeLibvirtDriver(make_conf(tmp_path))
    d.init_host("compute-b")
    yield d
    d.cleanup_host()


def test_a_disk_of_this_host_is_copied(drv, tmp_path):
    (tmp_path / "aside").mkdir()
    (tmp_path / "aside" / "disk").write_bytes(b"data")
    info = {"source_host": "compute-b", "instance_id": str(uuid.uuid4()),
            "path": str(tmp_path / "aside" / "disk"), "file_size": 4}
    drv._fetch_disk(info, str(tmp_path / "copy"))
    assert (tmp_path / "copy").read_bytes() == b"data"


def test_a_disk_of_another_host_needs_its_uri(drv, tmp_path):
    info = {"source_host": "compute-a", "instance_id": str(uuid.uuid4()),
            "path": "/var/lib/mininova/instances/x_resize/disk", "file_size": 4}
    with pytest.raises(exception.MigrationError, match="compute-a named no libvirt URI"):
        drv._fetch_disk(info, str(tmp_path / "copy"))
    assert not (tmp_path / "copy").exists()


def test_a_disk_of_another_host_is_never_read_by_path(drv, tmp_path):
    """Even when the path is readable here: it is asked of the source's libvirtd."""
    (tmp_path / "aside").mkdir()
    (tmp_path / "aside" / "disk").write_bytes(b"data")
    info = {"source_host": "compute-a", "source_uri": "test:///default",
            "instance_id": str(uuid.uuid4()), "path": str(tmp_path / "aside" / "disk"),
            "file_size": 4}
    with pytest.raises(libvirt.libvirtError, match="no storage vol"):
        drv._fetch_disk(info, str(tmp_path / "copy"))
    assert not (tmp_path / "copy").exists()
