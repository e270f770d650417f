"""GET /healthcheck of a real mininova-api whose broker and database are
reached through TCP forwarders this test owns (deploy/lab/tcp-forward.py):
200 OK; the broker's forwarder killed -> 503 naming the message broker;
back -> 200; the database's forwarder killed -> 503 naming the database. No
answer takes longer than the probe timeout allows. The real RabbitMQ and
PostgreSQL are never touched."""
import os
import subprocess
import sys
import time

import pytest
import requests

from mininova_lab import services
from mininova_lab.stack import Stack, free_port
from mininova_lab.waiting import wait_for

pytestmark = pytest.mark.real_services("rabbitmq", "postgresql", "http")

FORWARD = os.path.join(os.path.dirname(__file__), "..", "..", "deploy", "lab", "tcp-forward.py")
TIMEOUT = 1.0  # [api] healthcheck_timeout of the API under test


class Forwarder:
    def __init__(self, target_port):
        self.port, self.target_port, self.proc = free_port(), target_port, None

    def start(self):
        self.proc = subprocess.Popen([sys.executable, FORWARD, "127.0.0.1", str(self.port),
                                      "127.0.0.1", str(self.target_port), "127.0.0.1/32"],
                                     stdin=subprocess.DEVNULL)
        return self

    def kill(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


def test_healthcheck_names_what_is_down(tmp_path):
    stack = Stack(tmp_path / "stack", compute_driver="fake", network="", debug=False)
    broker, database = Forwarder(services.rabbit_port()), Forwarder(services.db_port())
    try:
        stack.configure()
        broker.start()
        database.start()
        port = free_port()
        conf = tmp_path / "forwarded.conf"
        # The API's own broker account when the stack has per-role accounts.
        api_url = (stack.broker_url("%s.api" % stack.tag) if stack.broker_passwords
                   else stack.transport_url)
        forwarded = api_url.replace(":%d/" % services.rabbit_port(), ":%d/" % broker.port)
        assert forwarded != api_url
        conf.write_text("[DEFAULT]\ntransport_url = %s\n[database]\nconnection = %s\n"
                        "[api]\nport = %d\nhealthcheck_timeout = %s\ntransport_url = %s\n" % (
                            forwarded,
                            stack.db_url.replace(":%d/" % services.db_port(),
                                                 ":%d/" % database.port),
                            port, TIMEOUT, forwarded))
        stack.start_daemon("api-fwd", module="api", extra_args=("--config-file", str(conf)))
        url = "http://127.0.0.1:%d/healthcheck" % port
        longest = [0.0]

        def answer(expect_status, expect_text):
            started = time.monotonic()
            try:
                r = requests.get(url, timeout=30)
            except requests.ConnectionError:
                return False
            longest[0] = max(longest[0], time.monotonic() - started)
            # A Response of a 503 is falsy: the text is what wait_for returns.
            return r.status_code == expect_status and expect_text in r.text and r.text

        wait_for(lambda: answer(200, "OK"), 30, what="healthcheck OK")
        broker.kill()
        text = wait_for(lambda: answer(503, "message broker unreachable"), 30,
                        what="healthcheck naming the broker")
        assert "database" not in text and "127.0.0.1" not in text
        broker.start()
        wait_for(lambda: answer(200, "OK"), 30, what="healthcheck OK again")
        database.kill()
        text = wait_for(lambda: answer(503, "database unreachable"), 30,
                        what="healthcheck naming the database")
        assert "broker" not in text
        assert requests.head(url, timeout=30).status_code == 503
        # Bounded: the probe timeout plus the API's own overhead (generous:
        # this is a shared machine), never the minutes of a TCP timeout.
        assert longest[0] < TIMEOUT + 10, longest
        print("\nlongest /healthcheck answer: %.3f s" % longest[0])
    finally:
        broker.kill()
        database.kill()
        stack.stop()
