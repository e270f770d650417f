"""The scale simulation at CI size (full size by hand: python -m bench.scale_sim)."""
from bench import scale_sim


def test_scale_sim_reduced(tmp_path):
    result = scale_sim.run(hosts=10, vms=200, schedulers=2, workdir=str(tmp_path), threads=16)
    print("\nscale sim (10 hosts, 200 VMs, 2 schedulers): %s" % result)
    assert result["accepted"] == 200
    assert result["active"] == 200 and result["error"] == 0
    assert result["overcommit"] == 0 and result["claim_mismatch"] == 0
