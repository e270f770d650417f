"""[api] workers: the option (default 1: one process, today's path) and its bounds."""
import socket

import pytest
from oslo_config import cfg

from common import config
from nova_api import workers


def _workers_opt():
    return next(o for o in config.api_opts if o.name == "workers")


def test_default_is_one_process():
    conf = cfg.ConfigOpts()
    conf.register_opts(config.api_opts, group="api")
    conf([])
    assert conf.api.workers == 1


@pytest.mark.parametrize("value", ["0", "-1", "65", "two"])
def test_out_of_bounds_refused(value):
    with pytest.raises(ValueError):
        _workers_opt().type(value)


def test_bind_socket_listens_before_any_fork():
    sock = workers.bind_socket("127.0.0.1", 0, 16)
    try:
        port = sock.getsockname()[1]
        assert sock.getblocking() is False
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # accepted by the kernel's backlog: the socket listens
    finally:
        sock.close()
