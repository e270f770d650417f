"""``mininova-manage rabbit migrate-to-quorum [--move-pending] [--dry-run]``:
switch a vhost's service queues from classic to quorum queues.

RabbitMQ cannot change a queue's type: the classic queue must go and a quorum
queue of the same name take its place, and every daemon of the vhost must then
declare it with ``[oslo_messaging_rabbit] rabbit_quorum_queue = true`` (a
daemon of the other type is refused, PRECONDITION_FAILED). So, with every
daemon stopped (the API too: it publishes):

1. refuse if any queue still has a consumer (a daemon still runs), naming
   them; refuse if messages wait in a classic queue, naming them, unless
   ``--move-pending``;
2. for each classic queue (``mininova.dead`` first, whose type every other
   declaration repeats): its waiting messages moved one by one into a
   holding queue ``<name>.migrating`` (published with confirms, then acked:
   at least once, and the handlers are idempotent), the queue deleted (only
   if empty), declared again as a quorum queue with the arguments the
   daemons use, the held messages moved back into it, the holding queue
   deleted. A holding queue left by an interrupted run is emptied into its
   queue the same way, so running the command again finishes the job;
3. the operator sets the option everywhere and starts the daemons.

The queues are ``scheduler``, ``conductor``, ``mininova.dead`` and
``compute.<host>`` for every compute service the database knows. Where the
daemons run on role accounts (README, Broker accounts) they cannot declare
those queues: the tool declares them, with ``--transport-url`` naming the
operator's account.
"""
import collections
import json
import urllib.parse

import amqp.exceptions
import kombu
import sqlalchemy as sa

from common import config, exception
from common.db.models import Service
from common.db.session import Database
from common.rpc import kombu_topology, kombu_transport

HOLDING_SUFFIX = ".migrating"

QueueState = collections.namedtuple("QueueState", "messages consumers quorum")


def queue_names(db):
    """The vhost's service queues, ``mininova.dead`` first."""
    with db.transaction() as s:
        hosts = sorted(s.scalars(sa.select(Service.host).where(Service.binary == "mininova-compute")))
    return [kombu_topology.DEAD_QUEUE, "scheduler", "conductor"] + ["compute." + h
                                                                     for h in hosts]


def migrate(broker, names, move_pending=False, dry_run=False):
    """Switch ``names`` to quorum queues through ``broker`` (see AmqpQueues);
    {queue: what was done}. MigrationRefused before anything is changed if a
    daemon still consumes or (without ``move_pending``) messages wait."""
    states = {name: broker.state(name) for name in names}
    held = {name: broker.state(name + HOLDING_SUFFIX) for name in names}
    busy = ["%s (%d consumers)" % (n, s.consumers) for n, s in states.items()
            if s and s.consumers]
    if busy:
        raise exception.MigrationRefused(reason=(
            "daemons still consume from %s: stop every mininova daemon (api, scheduler, "
            "conductor, each compute) first" % ", ".join(busy)))
    classic = [n for n in names if states[n] is not None and not states[n].quorum]
    waiting = ["%s (%d)" % (n, states[n].messages) for n in classic if states[n].messages]
    if waiting and not move_pending:
        raise exception.MigrationRefused(reason=(
            "messages wait in %s: start the daemons to let them drain and stop them again, "
            "or pass --move-pending to move them into the quorum queues" % ", ".join(waiting)))
    # RabbitMQ lets only the account a message's user_id names publish it, and
    # servers on role accounts refuse a message without one: such messages
    # cannot be moved by another account, only drained by their daemons.
    signed = sorted({user for n in classic if states[n].messages
                     for user in broker.foreign_senders(n)})
    if signed:
        raise exception.MigrationRefused(reason=(
            "messages waiting in the queues were sent by the accounts %s, and RabbitMQ lets "
            "no other account publish them again: start the daemons to let them drain, stop "
            "them, and run this again" % ", ".join(signed)))
    done = {}
    for name in names:
        state, holding = states[name], held[name]
        if state is None and holding is None:
            done[name] = "absent (its daemon declares it)"
            continue
        if state is not None and state.quorum and not (holding and holding.messages):
            done[name] = "already quorum"
            continue
        moved = state.messages if state is not None and not state.quorum else 0
        done[name] = "quorum, %d messages moved" % (moved + (holding.messages if holding else 0))
        if dry_run:
            continue
        if state is not None and not state.quorum:
            if state.messages:
                broker.move(name, name + HOLDING_SUFFIX)
            broker.delete(name)
        broker.declare_quorum(name)
        if holding is not None or moved:
            broker.move(name + HOLDING_SUFFIX, name)
            broker.delete(name + HOLDING_SUFFIX)
    return done


class AmqpQueues:
    """The queues of the vhost of ``transport_url``, over AMQP."""

    def __init__(self, transport_url, delivery_limit):
        self.delivery_limit = delivery_limit
        urls = kombu_transport.parse_url(transport_url)
        self.user = urllib.parse.unquote(urllib.parse.urlsplit(urls[0]).username or "")
        self.conn = kombu.Connection(";".join(urls),
                                     failover_strategy="round-robin", connect_timeout=10)
        self.conn.ensure_connection(max_retries=2)

    def close(self):
        self.conn.release()

    def _arguments(self, name):
        if name == kombu_topology.DEAD_QUEUE:
            return {"x-queue-type": "quorum"}
        return kombu_topology.queue_arguments(True, self.delivery_limit)

    def state(self, name):
        """QueueState, or None if there is no such queue."""
        channel = self.conn.channel()
        try:
            _, messages, consumers = channel.queue_declare(name, passive=True)
        except amqp.exceptions.NotFound:
            return None
        finally:
            _close(channel)
        return QueueState(messages, consumers, self._is_quorum(name))

    def _is_quorum(self, name):
        """Whether ``name`` is a quorum queue: declaring it as one is refused
        (naming x-queue-type) if it is classic. A holding queue is classic."""
        if name.endswith(HOLDING_SUFFIX):
            return False
        channel = self.conn.channel()
        try:
            channel.queue_declare(name, durable=True, auto_delete=False,
                                  arguments=self._arguments(name))
            return True
        except amqp.exceptions.PreconditionFailed as e:
            if "'x-queue-type'" in str(e):
                return False
            raise exception.MigrationRefused(reason=(
                "queue %s is not what the daemons declare: %s" % (name, e))) from e
        finally:
            _close(channel)

    def foreign_senders(self, name):
        """The user_ids other than this account's on the messages waiting in
        ``name``: each got and left unacked, so that closing the channel puts
        them all back, in order."""
        channel = self.conn.channel()
        users = set()
        try:
            while True:
                message = channel.basic_get(name, no_ack=False)
                if message is None:
                    break
                users.add(message.properties.get("user_id"))
        finally:
            _close(channel)
        return users - {None, self.user}

    def move(self, source, target):
        """Every message of ``source`` into ``target`` (a classic durable
        queue is declared if missing): published with a confirm, then acked."""
        channel = self.conn.channel()
        try:
            if target.endswith(HOLDING_SUFFIX):
                channel.queue_declare(target, durable=True, auto_delete=False)
            channel.confirm_select()
            while True:
                message = channel.basic_get(source, no_ack=False)
                if message is None:
                    return
                channel.basic_publish_confirm(
                    amqp.Message(message.body, **message.properties),
                    exchange="", routing_key=target, mandatory=True)
                channel.basic_ack(message.delivery_tag)
        finally:
            _close(channel)

    def delete(self, name):
        channel = self.conn.channel()
        try:
            channel.queue_delete(name, if_empty=True)
        finally:
            _close(channel)

    def declare_quorum(self, name):
        """As the daemons will (the same arguments and bindings)."""
        channel = self.conn.default_channel
        if name == kombu_topology.DEAD_QUEUE:
            kombu_topology.declare_dead_queue(channel, quorum=True)
        else:
            kombu_topology.declare_queue(channel, name, quorum=True,
                                         delivery_limit=self.delivery_limit)


def _close(channel):
    try:
        channel.close()
    except Exception:  # already closed by the broker's refusal
        pass


def add_arguments(parser):
    sub = parser.add_subparsers(dest="cmd", required=True)
    cmd = sub.add_parser("migrate-to-quorum", help="replace the vhost's classic service "
                         "queues by quorum queues (every daemon stopped first)")
    cmd.add_argument("--move-pending", action="store_true",
                     help="move the messages waiting in the classic queues into the quorum "
                          "ones (default: refuse while any wait)")
    cmd.add_argument("--dry-run", action="store_true", help="check and say what would be done")
    cmd.add_argument("--transport-url", help="an account that may configure, read and write "
                     "every queue of the vhost: the operator's where the daemons have role "
                     "accounts (README, Broker accounts); default [DEFAULT] transport_url")
    cmd.set_defaults(fn=migrate_command)


def migrate_command(conf, args):
    db = Database(config.database_url(conf))
    try:
        names = queue_names(db)
    finally:
        db.dispose()
    broker = AmqpQueues(args.transport_url or conf.transport_url,
                        conf.oslo_messaging_rabbit.rabbit_quorum_delivery_limit)
    try:
        done = migrate(broker, names, move_pending=args.move_pending, dry_run=args.dry_run)
    finally:
        broker.close()
    print(json.dumps({"queues": done, "dry_run": args.dry_run,
                      "next": "set [oslo_messaging_rabbit] rabbit_quorum_queue = true in every "
                              "daemon's configuration, then start them"}, indent=1))
