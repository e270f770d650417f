"""The lab hosts can live-migrate a running guest between them, with its disk
(deploy/lab/sim-host.sh: libvirtd listening on the host's address, a host UUID
of its own, QEMU's migration_host): straight with virsh, no mininova, A -> B
and back, the guest's console heartbeat continuing on the destination without
a new boot."""
import os
import subprocess

import pytest

from mininova_lab.raw_migration import BOOTED, RawGuest, ticks
from mininova_lab.sim_host import SimHost
from mininova_lab.waiting import wait_for

pytestmark = pytest.mark.real_services("libvirt")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BASE_DIR = "/var/lib/mininova-lab-live"
# Built from this checkout's recipe (the heartbeat), at a path of its own: the
# shared tiny.qcow2 may be the base of guests other runs are booting.
IMAGE = os.environ.get("MININOVA_TINY_IMAGE_LIVE", "/var/cache/mininova/tiny-live.qcow2")


def build_image():
    subprocess.run(["bash", os.path.join(ROOT, "deploy", "build-tiny-image.sh"), IMAGE],
                   check=True, capture_output=True, timeout=900)
    return IMAGE


@pytest.fixture(scope="module")
def hosts():
    image = build_image()
    sims = [SimHost("lmraw%d" % i, index=i, base_dir=BASE_DIR, forward=()) for i in (70, 71)]
    try:
        for sim in sims:
            sim.up()
        yield sims, image
    finally:
        for sim in sims:
            sim.down()


def test_sim_hosts_listen_with_distinct_uuids(hosts):
    (a, b), _ = hosts
    uuids = set()
    for sim in (a, b):
        # Reached over the other host's network, as the source's libvirtd does.
        other = b if sim is a else a
        out = other.run(["virsh", "-c", sim.facts["MIGRATION_URI"], "hostname"],
                        capture_output=True, text=True, timeout=30)
        assert out.returncode == 0 and out.stdout.strip() == sim.name, out.stderr
        caps = sim.virsh("capabilities").stdout
        uuids.add(caps.split("<uuid>", 1)[1].split("</uuid>", 1)[0])
    assert len(uuids) == 2


def test_raw_live_migration_there_and_back(hosts, tmp_path):
    (a, b), image = hosts
    guest = RawGuest(str(tmp_path), image)
    try:
        guest.start(a)
        wait_for(lambda: len(ticks(guest.console())) >= 2, 180, 0.5, what="heartbeat on A")
        boot = ticks(guest.console())[-1][0]
        last_up = ticks(guest.console())[-1][1]
        for dest in (b, a):
            stats = guest.migrate(dest)
            assert stats["time_elapsed"] > 0 and stats["downtime"] >= 0
            assert guest.host is dest
            assert guest.name in dest.virsh("list", "--name").stdout
            source = a if dest is b else b
            assert guest.name not in source.virsh("list", "--all", "--name").stdout
            wait_for(lambda: len(ticks(guest.console())) >= 2, 60, 0.5,
                     what="heartbeat on %s" % dest.name)
            here = ticks(guest.console())
            assert {t[0] for t in here} == {boot}   # the same boot, still running
            assert here[0][1] > last_up
            assert BOOTED not in guest.console()
            last_up = here[-1][1]
    finally:
        guest.destroy()
