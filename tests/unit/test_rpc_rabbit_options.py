"""[oslo_messaging_rabbit] options, failover urls and queue arguments of the
RabbitMQ transport, without a broker."""
import pytest
from oslo_config import cfg

from common import config
from common import rpc
from common.rpc import kombu_consumer
from common.rpc import kombu_transport


def parse(tmp_path, text=""):
    conf = cfg.ConfigOpts()
    config.register_opts(conf)
    path = tmp_path / "mininova.conf"
    path.write_text(text)
    return config.parse_args([], conf=conf, default_config_files=[str(path)])


def test_defaults_keep_classic_queues_and_todays_backoff(tmp_path):
    options = config.transport_options(parse(tmp_path))
    assert options == {"quorum_queues": False, "delivery_limit": 50,
                       "reconnect_interval": 0.5, "reconnect_max": 5.0,
                       "publish_retry_timeout": 2.0}
    transport = rpc.get_transport("rabbit://u:p@127.0.0.1:5672/", **options)
    assert not transport.quorum_queues
    assert transport._amqp_urls == ["amqp://u:p@127.0.0.1:5672/"]


def test_options_from_the_config_file(tmp_path):
    conf = parse(tmp_path, "[DEFAULT]\n"
                 "transport_url = rabbit://u:p@h1:5001,u:p@h2:5002,u:p@h3:5003/cloud\n"
                 "[oslo_messaging_rabbit]\nrabbit_quorum_queue = true\n"
                 "rabbit_quorum_delivery_limit = 7\nrabbit_retry_interval = 0.2\n"
                 "rabbit_interval_max = 3\nrabbit_publish_timeout = 15\n")
    transport = rpc.get_transport(conf.transport_url, **config.transport_options(conf))
    assert (transport.quorum_queues, transport.delivery_limit) == (True, 7)
    assert (transport.reconnect_interval, transport.reconnect_max) == (0.2, 3.0)
    assert transport.publish_retry_timeout == 15.0
    assert transport._amqp_urls == ["amqp://u:p@h1:5001/cloud", "amqp://u:p@h2:5002/cloud",
                                    "amqp://u:p@h3:5003/cloud"]


def test_memory_transport_ignores_the_rabbit_options(tmp_path):
    options = config.transport_options(parse(tmp_path))
    assert rpc.get_transport("memory://opts", **options) is rpc.get_transport("memory://opts")


def test_bad_option_values_are_refused(tmp_path):
    conf = parse(tmp_path, "[oslo_messaging_rabbit]\nrabbit_quorum_delivery_limit = -1\n")
    with pytest.raises(ValueError):
        conf.oslo_messaging_rabbit.rabbit_quorum_delivery_limit


@pytest.mark.parametrize("url, expected", [
    ("rabbit://u:p@h:1/v", ["amqp://u:p@h:1/v"]),
    ("rabbit://u:p@h:1", ["amqp://u:p@h:1"]),
    ("rabbit://u:p@h1:1,u2:p2@h2:2/v", ["amqp://u:p@h1:1/v", "amqp://u2:p2@h2:2/v"]),
    ("rabbit://u:p@h1,h2:2/v", ["amqp://u:p@h1/v", "amqp://u:p@h2:2/v"]),  # credentials of the first
])
def test_failover_urls(url, expected):
    assert kombu_transport.parse_url(url) == expected


@pytest.mark.parametrize("url", ["rabbit://u:p@h1,,h2/v", "rabbit://", "u:p@h"])
def test_malformed_urls_are_refused(url):
    with pytest.raises(ValueError):
        kombu_transport.parse_url(url)


def test_queue_arguments():
    assert kombu_transport.queue_arguments() == {"x-dead-letter-exchange": "mininova.dlx"}
    assert kombu_transport.queue_arguments(quorum=False, delivery_limit=5) == {
        "x-dead-letter-exchange": "mininova.dlx"}
    assert kombu_transport.queue_arguments(quorum=True, delivery_limit=5) == {
        "x-dead-letter-exchange": "mininova.dlx", "x-queue-type": "quorum",
        "x-delivery-limit": 5}
    assert "x-delivery-limit" not in kombu_transport.queue_arguments(quorum=True)


class FakeChannel:
    def __init__(self):
        self.declared = []

    def queue_declare(self, queue, passive=False, durable=False, exclusive=False,
                      auto_delete=False, arguments=None, nowait=False, **kw):
        self.declared.append((queue, durable, exclusive, auto_delete, arguments))
        return queue, 0, 0

    def exchange_declare(self, *args, **kwargs):
        pass

    def prepare_queue_arguments(self, arguments, **kwargs):
        return arguments

    def queue_bind(self, *args, **kwargs):
        pass


@pytest.mark.parametrize("quorum", [False, True])
def test_declared_queues(quorum):
    channel = FakeChannel()
    kombu_transport.declare_queue(channel, "scheduler", quorum=quorum, delivery_limit=9)
    dead, target = channel.declared
    assert dead[:4] == ("mininova.dead", True, False, False)
    assert target[:4] == ("scheduler", True, False, False)  # durable, shared, kept
    if quorum:
        assert dead[4] == {"x-queue-type": "quorum"}
        assert target[4] == {"x-dead-letter-exchange": "mininova.dlx",
                             "x-queue-type": "quorum", "x-delivery-limit": 9}
    else:
        assert not dead[4]
        assert target[4] == {"x-dead-letter-exchange": "mininova.dlx"}


class FakeConnection:
    down = set()
    made = []

    def __init__(self, url, **kwargs):
        self.url = url
        FakeConnection.made.append(url)

    def ensure_connection(self, max_retries=None):
        if self.url in self.down:
            raise ConnectionRefusedError(111, "refused")

    def collect(self):
        pass


def test_connect_fails_over_and_sticks_to_the_broker_that_answered(monkeypatch):
    monkeypatch.setattr(kombu_transport.kombu, "Connection", FakeConnection)
    transport = kombu_transport.KombuTransport("rabbit://u:p@h1:1,u:p@h2:2,u:p@h3:3/v")
    h1, h2, h3 = transport._amqp_urls
    FakeConnection.down, FakeConnection.made = {h1}, []
    assert transport.connect(consumer=True).url == h2
    assert transport.connect(consumer=False).url == h2  # h1 is not tried again
    FakeConnection.down = {h2}
    assert transport.connect(consumer=True).url == h3
    FakeConnection.down = {h1, h2, h3}
    with pytest.raises(ConnectionRefusedError):
        transport.connect(consumer=True)
    assert FakeConnection.made == [h1, h2, h2, h2, h3, h3, h1, h2]


def test_jitter_never_lengthens_the_backoff():
    values = [kombu_consumer.jittered(2.0) for _ in range(200)]
    assert all(1.0 <= v <= 2.0 for v in values)
    assert len(set(values)) > 1
