"""Least-privilege RabbitMQ accounts: one per role and per compute host.

``definitions`` renders them as a RabbitMQ definitions document (users with
salted password hashes, permissions, topic permissions, and the topology the
role accounts may not create themselves: the exchanges, ``mininova.dead``,
the service queues), imported in one ``rabbitmqctl import_definitions``
(each rabbitmqctl call costs seconds; passwords never reach a command line):

    printf '%s %s\\n' mininova.api "$PW" ... |
        python -m common.rpc.accounts --vhost V [--quorum] | rabbitmqctl import_definitions

User names say their role (``common.rpc.policy``): ``<base>.api``,
``.scheduler``, ``.conductor``, ``.manage``, ``<base>.compute.<host>``.
Resource regexes are anchored; every user gets topic permissions on the
``mininova`` exchange (without any, RabbitMQ allows every routing key):

- configure: its own service queue and reply queues
  (``mininova.reply.<user>.*``) only; never an exchange (that would allow
  deleting it);
- write: the ``mininova`` exchange (routing keys narrowed by the topic
  permissions), ``mininova.dlx`` (a server declaring its queue with
  that dead-letter exchange needs it), its own queues (to bind them);
- read: the ``mininova`` exchange (to bind), its own queues: it can
  consume nothing else;
- topic write (routing keys it may publish): see ``PUBLISHES``; topic read
  (keys it may bind): its own queues'.
"""
import argparse
import base64
import hashlib
import json
import os
import re
import sys

from common import config
from common.rpc import kombu_transport
from common.rpc import policy

EXCHANGE = kombu_transport.EXCHANGE
REPLIES = r"mininova\.reply\..+"
# Routing keys each role may publish on the mininova exchange.
PUBLISHES = {
    "api": ["conductor", "scheduler", r"compute\..+"],
    "manage": [r"compute\..+"],
    "scheduler": ["conductor", REPLIES],
    "conductor": ["conductor", "scheduler", r"compute\..+", REPLIES],
    "compute": ["conductor", REPLIES],
}
SERVICE_QUEUES = ("scheduler", "conductor")
# The daemons' default: the queues made here must have the arguments they declare.
DEFAULT_DELIVERY_LIMIT = next(opt.default for opt in config.oslo_messaging_rabbit_opts
                              if opt.dest == "rabbit_quorum_delivery_limit")


def password_hash(password, salt=None):
    """RabbitMQ's rabbit_password_hashing_sha256: base64(salt + sha256(salt + pw))."""
    salt = os.urandom(4) if salt is None else salt
    digest = hashlib.sha256(salt + password.encode("utf-8")).digest()
    return base64.b64encode(salt + digest).decode("ascii")


def own_queues(sender):
    if sender.role == "compute":
        return ["compute." + sender.host]
    return [sender.role] if sender.role in SERVICE_QUEUES else []


def permissions(user):
    """(configure, write, read, topic write, topic read) regexes of ``user``."""
    sender = policy.sender_of(user)
    if sender is None:
        raise ValueError("broker user %r names no role (<base>.api, .scheduler, .conductor, "
                         ".manage, .compute.<host>)" % (user,))
    replies = r"mininova\.reply\.%s\..+" % re.escape(user)
    own = [re.escape(q) for q in own_queues(sender)] + [replies]

    def anchored(items):
        return "^(%s)$" % "|".join(items)

    return (anchored(own),
            anchored([re.escape(EXCHANGE), re.escape(kombu_transport.DLX)] + own),
            anchored([re.escape(EXCHANGE)] + own),
            anchored(PUBLISHES[sender.role]),
            anchored(own))


def definitions(vhost, passwords, quorum=False, delivery_limit=DEFAULT_DELIVERY_LIMIT):
    """The definitions document for ``passwords`` ({user: password})."""
    doc = {"users": [], "vhosts": [{"name": vhost}], "permissions": [],
           "topic_permissions": [], "exchanges": [], "queues": [], "bindings": []}
    queues = list(SERVICE_QUEUES)
    for user, password in sorted(passwords.items()):
        configure, write, read, topic_write, topic_read = permissions(user)
        doc["users"].append({"name": user, "password_hash": password_hash(password),
                             "hashing_algorithm": "rabbit_password_hashing_sha256",
                             "tags": ""})
        doc["permissions"].append({"user": user, "vhost": vhost, "configure": configure,
                                   "write": write, "read": read})
        doc["topic_permissions"].append({"user": user, "vhost": vhost, "exchange": EXCHANGE,
                                         "write": topic_write, "read": topic_read})
        sender = policy.sender_of(user)
        queues += [q for q in own_queues(sender) if q not in queues]
    for name, kind in ((EXCHANGE, "topic"), (kombu_transport.DLX, "fanout")):
        doc["exchanges"].append({"name": name, "vhost": vhost, "type": kind, "durable": True,
                                 "auto_delete": False, "internal": False, "arguments": {}})
    doc["queues"].append({"name": kombu_transport.DEAD_QUEUE, "vhost": vhost, "durable": True,
                          "auto_delete": False,
                          "arguments": {"x-queue-type": "quorum"} if quorum else {}})
    doc["bindings"].append({"source": kombu_transport.DLX, "vhost": vhost,
                            "destination": kombu_transport.DEAD_QUEUE,
                            "destination_type": "queue", "routing_key": "", "arguments": {}})
    for name in queues:
        doc["queues"].append({"name": name, "vhost": vhost, "durable": True,
                              "auto_delete": False,
                              "arguments": kombu_transport.queue_arguments(quorum,
                                                                           delivery_limit)})
        doc["bindings"].append({"source": EXCHANGE, "vhost": vhost, "destination": name,
                                "destination_type": "queue", "routing_key": name,
                                "arguments": {}})
    return doc


def main(argv=None, stdin=sys.stdin, stdout=sys.stdout):
    parser = argparse.ArgumentParser(
        prog="python -m common.rpc.accounts",
        description="Read 'USER PASSWORD' lines on stdin, write RabbitMQ definitions "
                    "(for rabbitmqctl import_definitions) on stdout.")
    parser.add_argument("--vhost", required=True)
    parser.add_argument("--quorum", action="store_true",
                        help="quorum service queues ([oslo_messaging_rabbit] rabbit_quorum_queue)")
    parser.add_argument("--delivery-limit", type=int, default=DEFAULT_DELIVERY_LIMIT,
                        help="[oslo_messaging_rabbit] rabbit_quorum_delivery_limit "
                             "(default %(default)s, as the daemons')")
    args = parser.parse_args(argv)
    passwords = {}
    for number, line in enumerate(stdin, 1):
        user, _, password = line.strip().partition(" ")
        if not user:
            continue
        if not password:
            parser.error("line %d: 'USER PASSWORD' expected" % number)
        passwords[user] = password
    try:
        doc = definitions(args.vhost, passwords, args.quorum, args.delivery_limit)
    except ValueError as exc:
        parser.error(str(exc))
    json.dump(doc, stdout, indent=1)
    stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
