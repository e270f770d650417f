"""The disk of a resize or cold migration fetched from the source host's
libvirtd (nova_compute/virt/libvirt/disk_transfer.py, LibvirtBase._adopt_disk),
here from the real libvirtd (qemu:///system) standing for the source's: the
overlay arrives whole and sparse, on this host's base, checked; a download
cut, a source unreachable, a short or corrupt copy leave nothing behind and
the source's file as it was. (Two hosts, each its own libvirtd and a directory
the other cannot see: tests/functional/test_e2e_resize_remote.py.)"""
import errno
import hashlib
import os
import shutil
import uuid

import libvirt
import pytest

from common import exception
from nova_compute.virt.libvirt import disk_transfer
from tests.functional.test_virt_libvirt import (  # noqa: F401 (fixtures)
    URI, base_image, make_driver, overlay_info, run)

pytestmark = pytest.mark.real_services("libvirt")

MiB = 1024 ** 2


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def pools():
    conn = libvirt.open(URI)
    try:
        return set(conn.listStoragePools() + conn.listDefinedStoragePools())
    finally:
        conn.close()


@pytest.fixture
def source(tmp_path, base_image):
    """A set-aside directory as a source leaves it: an overlay on
    ``base_image`` with 6 MiB written in two places (a hole between)."""
    aside = tmp_path / "source" / ("%s_resize" % uuid.uuid4())
    aside.mkdir(parents=True)
    disk = str(aside / "disk")
    for cmd in (("qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base_image,
                 disk), ("qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 4M",
                         "-c", "write -P 0xa5 512M 2M", disk)):
        out = run(*cmd)
        assert out.returncode == 0, out.stderr
    return disk


def other_base(tmp_path, base_image):
    """This host's copy of the same image, at a path of its own."""
    path = str(tmp_path / "cache-b" / "blank")
    os.makedirs(os.path.dirname(path))
    shutil.copyfile(base_image, path)
    return path


def test_the_overlay_arrives_whole(source, tmp_path):
    target = str(tmp_path / "disk.part")
    size, instance_id = os.path.getsize(source), str(uuid.uuid4())
    got = disk_transfer.download(URI, instance_id, os.path.dirname(source), "disk", target,
                                 size)
    assert got == size == os.path.getsize(target) and digest(target) == digest(source)
    assert os.stat(target).st_mode & 0o777 == 0o600
    assert disk_transfer.pool_name(instance_id) not in pools()  # it lived for the download


def test_the_driver_adopts_it_on_its_own_base(make_driver, source, tmp_path, base_image):
    drv = make_driver()
    instance_id = os.path.basename(os.path.dirname(source))[:36]
    base_b = other_base(tmp_path, base_image)
    info = {"source_host": "elsewhere", "source_uri": URI, "instance_id": instance_id,
            "path": source, "file_size": os.path.getsize(source),
            "virtual_size": 1 << 30}
    drv.files.fresh_dir(instance_id)
    disk = drv.files.disk(instance_id)
    drv._adopt_disk(info, disk, base_b, 2 << 30)
    got = overlay_info(disk)
    assert got["backing-filename"] == base_b and got["virtual-size"] == 2 << 30
    out = run("qemu-io", "-r", "-f", "qcow2", "-c", "read -P 0x5a 0 4M",
              "-c", "read -P 0xa5 512M 2M", "-c", "read -P 0 8M 1M", disk)
    assert out.returncode == 0 and "Pattern verification failed" not in out.stdout, out
    assert os.listdir(drv.files.dir(instance_id)) == ["disk"]  # no .part left


class CutSink(disk_transfer.Sink):
    """The copy breaks after its first chunk (the disk here full)."""

    def data(self, stream, data, opaque):
        if self.received:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().data(stream, data, opaque)


def test_a_download_cut_leaves_nothing(source, tmp_path):
    target = str(tmp_path / "disk.part")
    before = digest(source)
    instance_id = str(uuid.uuid4())
    with pytest.raises(OSError, match="No space"):
        disk_transfer.download(URI, instance_id, os.path.dirname(source), "disk", target,
                               os.path.getsize(source), sink=CutSink)
    assert not os.path.exists(target) and digest(source) == before
    assert disk_transfer.pool_name(instance_id) not in pools()


def test_a_short_copy_is_refused(source, tmp_path):
    target = str(tmp_path / "disk.part")
    with pytest.raises(exception.HypervisorError, match="arrived"):
        disk_transfer.download(URI, str(uuid.uuid4()), os.path.dirname(source), "disk",
                               target, os.path.getsize(source) + 1)
    assert not os.path.exists(target)


def test_a_source_unreachable_leaves_nothing(source, tmp_path):
    target = str(tmp_path / "disk.part")
    with pytest.raises(libvirt.libvirtError):
        disk_transfer.download("qemu+tcp://127.0.0.1:1/system", str(uuid.uuid4()),
                               os.path.dirname(source), "disk", target, 1)
    assert not os.path.exists(target)


def test_a_corrupt_copy_is_refused_and_leaves_nothing(make_driver, source, tmp_path,
                                                      base_image):
    drv = make_driver()
    instance_id = os.path.basename(os.path.dirname(source))[:36]
    with open(source, "r+b") as f:  # the L1 table pointer beyond the file
        f.seek(40)
        f.write((1 << 40).to_bytes(8, "big"))
    info = {"source_host": "elsewhere", "source_uri": URI, "instance_id": instance_id,
            "path": source, "file_size": os.path.getsize(source), "virtual_size": 1 << 30}
    drv.files.fresh_dir(instance_id)
    with pytest.raises(exception.HypervisorError):
        drv._adopt_disk(info, drv.files.disk(instance_id), other_base(tmp_path, base_image),
                        1 << 30)
    assert os.listdir(drv.files.dir(instance_id)) == []
