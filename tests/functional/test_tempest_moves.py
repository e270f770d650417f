"""Tempest 47, unmodified, on a stack with two compute hosts: the cold and
live (block) migration tests of tests/tempest/m3.load-list, every one of
which must pass (what is left out and why: tests/tempest/m3.reasons).

The computes are lab sim hosts (deploy/lab/sim-host.sh: each its own
libvirtd listening on its own address with its own host UUID, and a compute
agent in its network namespace), as live migration needs both ends; the
guests have no NIC (Tempest checks no address in these tests). The
configuration is tests/tempest/tempest.conf.in with the moves switched on
(mininova_lab.tempest.MOVES_CONF) and the accounts of accounts.yaml plus
accounts-moves.yaml."""
import os
import time

import pytest

from mininova_lab import sim_compute, tempest
from mininova_lab.stack import Stack

pytestmark = pytest.mark.real_services("rabbitmq", "postgresql", "libvirt", "http")

BASE_DIR = "/var/lib/mininova-lab-tempest"
INDEXES = (100, 101)
LIST = "m3.load-list"


def start_compute(stack, sim):
    return sim_compute.start_compute(stack, sim, network="")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("tempest-moves")
    stack = Stack(workdir, debug=False, network="", extra_conf=tempest.STACK_CONF)
    try:
        stack.start(compute=False)
        with sim_compute.lab_hosts(stack, ("tpa", "tpb"), INDEXES, BASE_DIR, start_compute):
            try:
                workspace = tempest.prepare(
                    stack, os.environ["MININOVA_TINY_IMAGE"], workdir,
                    accounts=("accounts.yaml", "accounts-moves.yaml"),
                    overrides=tempest.MOVES_CONF)
                t0 = time.monotonic()
                statuses = tempest.run(workspace, tempest.load_list(LIST), concurrency=3)
                yield statuses, workspace, time.monotonic() - t0
            finally:
                stack.delete_all_vms(timeout=120)
    finally:
        stack.stop()


def test_tempest_moves_pass(results, capsys):
    statuses, workspace, seconds = results
    ids = tempest.load_list(LIST)
    counts = {}
    for test_id in ids:
        status = statuses.get(test_id, "not run").replace("exists", "not run")
        counts[status] = counts.get(status, 0) + 1
    with capsys.disabled():
        print("\ntempest %s: %d ids, %s (tempest run %.0f s)" % (
            LIST, len(ids), ", ".join("%s %d" % kv for kv in sorted(counts.items())), seconds))
    not_passed = {i: statuses.get(i, "not run") for i in ids if statuses.get(i) != "success"}
    assert not not_passed, "expected to pass but did not (see %s/tempest-run.log): %s" % (
        workspace, not_passed)
