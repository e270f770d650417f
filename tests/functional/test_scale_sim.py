"""The scale simulation at CI size (full size by hand: python -m bench.scale_sim)."""
import pytest

from bench import scale_sim

pytestmark = pytest.mark.real_services("rabbitmq", "postgresql", "http")


def test_scale_sim_reduced(tmp_path):
    result = scale_sim.run(hosts=10, vms=200, schedulers=2, workdir=str(tmp_path), threads=16)
    print("\nscale sim (10 hosts, 200 VMs, 2 schedulers): %s" % result)
    assert result["accepted"] == 200
    assert result["active"] == 200 and result["error"] == 0
    assert result["overcommit"] == 0 and result["allocation_mismatch"] == 0


def test_burst_beyond_capacity_never_overcommits(tmp_path):
    # 3 hosts of the test driver: 3072 MB * 1.5 = 36 m1.tiny VMs each, 108 in all;
    # three schedulers race for the last room (claims are atomic in the database).
    result = scale_sim.run(hosts=3, vms=150, schedulers=3, workdir=str(tmp_path), threads=16)
    print("\nburst beyond capacity: %s" % result)
    assert result["overcommit"] == 0 and result["allocation_mismatch"] == 0
    assert result["active"] == 108
    assert result["error"] == result["no_valid_host"] == 150 - 108
