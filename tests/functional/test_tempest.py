"""Tempest 47, unmodified, against a real stack (API on waitress, scheduler,
conductor, a compute on libvirtd/QEMU booting the tiny guest): the compute
tests of SPEC §5 (tests/tempest/m1.load-list and m2.load-list), with the
configuration and pre-provisioned accounts of tests/tempest/.

Every test id in tests/tempest/expected-pass must pass. That list grows as
the OpenStack API does; the run's totals for each load list are printed, so
the distance to the milestones is visible in every `make test`. The move
tests run on a stack with two compute hosts: test_tempest_moves.py."""
import os

import pytest

from mininova_lab import tempest
from mininova_lab.stack import Stack

pytestmark = pytest.mark.real_services("rabbitmq", "postgresql", "libvirt", "http")

LISTS = ("m1.load-list", "m2.load-list")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("tempest")
    stack = Stack(workdir, debug=False, extra_conf=tempest.STACK_CONF)
    try:
        stack.start()
        workspace = tempest.prepare(stack, os.environ["MININOVA_TINY_IMAGE"], workdir)
        ids = [i for name in LISTS for i in tempest.load_list(name)]
        yield tempest.run(workspace, ids), workspace
    finally:
        stack.delete_all_vms()
        stack.stop()


def totals(statuses, ids):
    counts = {}
    for test_id in ids:
        # "exists": listed, never started (its class's set-up failed)
        status = statuses.get(test_id, "exists").replace("exists", "not run")
        counts[status] = counts.get(status, 0) + 1
    return counts


def test_expected_tempest_tests_pass(results, capsys):
    statuses, workspace = results
    with open(os.path.join(workspace, "statuses.txt"), "w") as f:
        f.writelines("%s %s\n" % (status, i) for i, status in sorted(statuses.items()))
    with capsys.disabled():
        for name in LISTS:
            ids = tempest.load_list(name)
            print("\ntempest %s: %d ids, %s" % (name, len(ids), ", ".join(
                "%s %d" % kv for kv in sorted(totals(statuses, ids).items()))))
    expected = tempest.load_list("expected-pass")
    not_passed = {i: statuses.get(i, "not run") for i in expected
                  if statuses.get(i) != "success"}
    assert not not_passed, "expected to pass but did not (see %s/tempest-run.log): %s" % (
        workspace, not_passed)


def test_expected_pass_ids_are_in_the_load_lists():
    listed = {i for name in LISTS for i in tempest.load_list(name)}
    assert set(tempest.load_list("expected-pass")) <= listed
