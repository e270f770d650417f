import os

import pytest

from tests.functional.stack import Stack, qemu_img_create, virsh


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
        for vm in s.get("/v1/vms").json().get("vms", []):
            s.delete("/v1/vms/" + vm["id"])
        for vm in s.get("/v1/vms").json().get("vms", []):
            try:
                s.wait_gone(vm["id"], timeout=60)
            except AssertionError:
                pass
        s.stop()
