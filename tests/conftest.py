import pytest
from oslo_config import cfg

from common import config


@pytest.fixture
def conf(tmp_path):
    c = cfg.ConfigOpts()
    config.register_opts(c)
    c([], project="mininova", default_config_files=[])
    c.set_override("state_path", str(tmp_path))
    c.set_override("host", "unit-host")
    c.set_override("instances_path", str(tmp_path / "instances"), group="compute")
    c.set_override("image_cache_path", str(tmp_path / "_base"), group="compute")
    return c


class Recorder:
    """Stands in for an RPC client API: records each method called."""

    def __init__(self, fail_with=None):
        self.calls = []
        self.fail_with = fail_with

    def __getattr__(self, method):
        def record(ctxt, *args, **kwargs):
            if self.fail_with:
                raise self.fail_with
            self.calls.append((method, args, kwargs))
        return record


@pytest.fixture
def recorder():
    return Recorder
