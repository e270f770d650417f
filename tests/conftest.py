import os

import pytest
from oslo_config import cfg

from common import config
from tests import prerequisites

# What a test runs against, by its `real_services` marker (module or test).
SERVICES = ("rabbitmq", "postgresql", "libvirt", "http")
SERVICE_NAMES = {"rabbitmq": "RabbitMQ", "postgresql": "PostgreSQL",
                 "libvirt": "libvirtd/QEMU", "http": "the HTTP server (waitress)"}
FUNCTIONAL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "functional")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "real_services(*names): the real services the test runs against "
        "(%s); none: in-process" % ", ".join(SERVICES))


def real_services(item):
    marker = item.get_closest_marker("real_services")
    return tuple(marker.args) if marker else ()


SERVICES_OF = pytest.StashKey[dict]()


def pytest_collection_modifyitems(session, config, items):
    """Every functional test says what it runs against; unit tests run in-process."""
    wrong, services_of = [], {}
    for item in items:
        marker = item.get_closest_marker("real_services")
        functional = str(item.fspath).startswith(FUNCTIONAL + os.sep)
        if functional and marker is None:
            wrong.append("%s: a functional test without a real_services marker" % item.nodeid)
        elif not functional and marker is not None and marker.args:
            wrong.append("%s: a unit test marked as running on real services" % item.nodeid)
        elif marker is not None and set(marker.args) - set(SERVICES):
            wrong.append("%s: unknown services %s" % (item.nodeid, set(marker.args) - set(SERVICES)))
        services_of[item.nodeid] = tuple(marker.args) if marker else ()
    if wrong:
        raise pytest.UsageError("\n".join(wrong))
    config.stash[SERVICES_OF] = services_of


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under `make test` nothing skips: a skip, wherever it comes from, fails."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and prerequisites.strict() and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = "skipped under `make test`, where nothing may skip: %s" % reason


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """The run's last lines: how many tests ran on the real services (and on
    which), and how many in-process."""
    services_of = config.stash.get(SERVICES_OF, {})
    ran = {r.nodeid for key in ("passed", "failed", "error", "skipped")
           for r in terminalreporter.stats.get(key, []) if r.nodeid in services_of}
    if not ran:
        return
    real = [n for n in ran if services_of[n]]
    per_service = ", ".join("%s %d" % (SERVICE_NAMES[s], sum(s in services_of[n] for n in real))
                            for s in SERVICES)
    terminalreporter.write_sep("=", "what the tests ran on")
    terminalreporter.write_line("%d tests on real services (%s)" % (len(real), per_service))
    terminalreporter.write_line(
        "%d in-process unit tests (SQLite, in-memory RPC, Flask's test client, libvirt's "
        "test driver; no service)" % (len(ran) - len(real)))


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
