"""qemu-img overlays (needs only the qemu-img binary, no libvirtd)."""
import json
import shutil
import subprocess

import pytest

from common import exception
from tests import prerequisites
from nova_compute.virt.libvirt import imagebackend

GiB = imagebackend.GiB


@pytest.fixture(autouse=True)
def qemu_img_installed():
    prerequisites.require(shutil.which("qemu-img"), "qemu-img (apt: qemu-utils; "
                          "deploy/install-host.sh installs it)")


def qemu_img(*args):
    return subprocess.run(["qemu-img", *args], capture_output=True, text=True,
                          timeout=60, check=True).stdout


@pytest.fixture
def base(tmp_path):
    path = str(tmp_path / "base.qcow2")
    qemu_img("create", "-q", "-f", "qcow2", path, "1G")
    return path


def test_overlay_size_is_the_larger_of_flavor_and_base():
    assert imagebackend.overlay_size(2, 1 * GiB) == 2 * GiB
    assert imagebackend.overlay_size(0, 1 * GiB) == 1 * GiB
    assert imagebackend.overlay_size(1, 3 * GiB + 512) == 3 * GiB + 512


def test_create_overlay_on_absolute_base(base, tmp_path):
    overlay = str(tmp_path / "disk")
    imagebackend.create_overlay(base, overlay, imagebackend.overlay_size(
        2, imagebackend.base_virtual_size(base)))
    info = json.loads(qemu_img("info", "--output=json", overlay))
    assert info["backing-filename"] == base
    assert info["backing-filename-format"] == "qcow2"
    assert info["virtual-size"] == 2 * GiB


def test_relative_base_is_refused(tmp_path):
    with pytest.raises(exception.Invalid, match="absolute"):
        imagebackend.create_overlay("base.qcow2", str(tmp_path / "disk"), GiB)


def test_base_with_its_own_backing_file_is_refused(base, tmp_path):
    chained = str(tmp_path / "chained.qcow2")
    qemu_img("create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base, chained)
    with pytest.raises(exception.Invalid, match="backing file"):
        imagebackend.base_virtual_size(chained)


def test_raw_base_is_not_probed_as_something_else(tmp_path):
    raw = tmp_path / "raw.img"
    raw.write_bytes(b"\0" * 65536)
    with pytest.raises(exception.HypervisorError, match="qemu-img info failed"):
        imagebackend.base_virtual_size(str(raw))


def test_direct_io_probe_leaves_no_file(tmp_path):
    assert imagebackend.supports_direct_io(str(tmp_path)) in (True, False)
    assert list(tmp_path.iterdir()) == []
