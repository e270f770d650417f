"""The RabbitMQ topology of mininova's transport (see ``kombu_transport``),
and how a daemon declares it with the permissions its broker account has."""
import logging

import amqp.exceptions

from common import exception

LOG = logging.getLogger(__name__)

EXCHANGE = "mininova"
DLX = "mininova.dlx"
DEAD_QUEUE = "mininova.dead"


def queue_arguments(quorum=False, delivery_limit=0):
    """The arguments of a Target queue (see the module docstring)."""
    arguments = {"x-dead-letter-exchange": DLX}
    if quorum:
        arguments["x-queue-type"] = "quorum"
        if delivery_limit:
            arguments["x-delivery-limit"] = delivery_limit
    return arguments


def _declarations(name, quorum, delivery_limit):
    """What ``name`` needs, in order: (key, declare(channel, passive))."""
    dead_args = {"x-queue-type": "quorum"} if quorum else None

    def dlx(channel, passive):
        channel.exchange_declare(DLX, "fanout", durable=True, auto_delete=False, passive=passive)

    def dead(channel, passive):
        channel.queue_declare(DEAD_QUEUE, durable=True, auto_delete=False,
                              arguments=dead_args, passive=passive)
        if not passive:
            channel.queue_bind(DEAD_QUEUE, DLX, "")

    def topic(channel, passive):
        channel.exchange_declare(EXCHANGE, "topic", durable=True, auto_delete=False,
                                 passive=passive)

    def target(channel, passive):
        channel.queue_declare(name, durable=True, auto_delete=False,
                              arguments=queue_arguments(quorum, delivery_limit), passive=passive)
        if not passive:
            channel.queue_bind(name, EXCHANGE, name)

    return [("exchange " + DLX, dlx), ("queue " + DEAD_QUEUE, dead),
            ("exchange " + EXCHANGE, topic), ("queue " + name, target)]


def declare_queue(channel, name, quorum=False, delivery_limit=0):
    """Declare the exchanges, the dead-letter queue and queue ``name``.

    Client and server call this with identical arguments: RabbitMQ refuses a
    re-declaration with different ones (PRECONDITION_FAILED).
    """
    for _, declare in _declarations(name, quorum, delivery_limit):
        declare(channel, False)


def declare_dead_queue(channel, quorum=False):
    """The dead-letter exchange and ``mininova.dead`` alone (a classic to
    quorum switch makes it first: every other queue's declaration repeats it)."""
    for _, declare in _declarations("", quorum, 0)[:2]:
        declare(channel, False)


class Topology:
    """``declare_queue`` for a broker user that may not declare everything.

    A role account (README "Broker accounts") may configure only its own
    queues: the exchanges, ``mininova.dead`` and the queues of other services
    are made by the operator's account setup. What RabbitMQ refuses to let
    us declare (ACCESS_REFUSED, which closes the channel) is remembered and
    from then on only checked to exist (a passive declare needs no
    permission); one that does not exist is ServiceUnavailable, since a
    message published to it would be dropped.
    """

    def __init__(self, quorum=False, delivery_limit=0):
        self.quorum = quorum
        self.delivery_limit = delivery_limit
        self._check_only = set()  # keys RabbitMQ refused to let this user declare

    def declare_queue(self, conn, channel, name):
        """Returns the channel to go on with (a new one after a refusal)."""
        return self._declare(conn, channel, _declarations(name, self.quorum,
                                                          self.delivery_limit))

    def declare_exchange(self, conn, channel):
        """The topic exchange alone (for reply queues); returns the channel."""
        return self._declare(conn, channel, _declarations("", False, 0)[2:3])

    def _declare(self, conn, channel, declarations):
        for key, declare in declarations:
            if key not in self._check_only:
                try:
                    declare(channel, False)
                    continue
                except amqp.exceptions.AccessRefused:
                    LOG.info("Broker user may not declare %s; checking it exists instead", key)
                    self._check_only.add(key)
                    channel = conn.channel()
            try:
                declare(channel, True)
            except amqp.exceptions.NotFound:
                raise exception.ServiceUnavailable(
                    reason="%s does not exist and this broker user may not create it "
                           "(see README, Broker accounts)" % key) from None
        return channel
