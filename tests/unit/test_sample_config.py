"""etc/mininova.conf.sample is what oslo-config-generator makes of the code's options."""
import os

from oslo_config import generator

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SAMPLE = os.path.join(ROOT, "etc", "mininova.conf.sample")


def test_sample_config_is_current(tmp_path):
    out = tmp_path / "mininova.conf.sample"
    generator.main(["--namespace", "mininova", "--output-file", str(out)])
    with open(SAMPLE) as f:
        assert out.read_text() == f.read(), (
            "etc/mininova.conf.sample is stale: run `oslo-config-generator --namespace "
            "mininova --output-file etc/mininova.conf.sample`")
