"""mininova-manage rabbit migrate-to-quorum: what it refuses and in which order
it replaces the queues (nova_manage/rabbit_migrate.py), on an in-memory broker.
On a real RabbitMQ node with a stack: tests/functional/test_rabbit_quorum_migration.py."""
import pytest

from common import exception
from nova_manage import rabbit_migrate
from nova_manage.rabbit_migrate import QueueState

NAMES = ["mininova.dead", "scheduler", "conductor", "compute.h1"]


class FakeQueues:
    """Queues by name: {"type": "classic"|"quorum", "messages": [...], "consumers": n};
    every change logged."""

    def __init__(self, **queues):
        self.queues = {name.replace("__", "."): dict(q) for name, q in queues.items()}
        self.log = []

    def foreign_senders(self, name):
        return {m.partition("@")[2] for m in self.queues[name]["messages"]} - {"", "operator"}

    def state(self, name):
        q = self.queues.get(name)
        if q is None:
            return None
        return QueueState(len(q["messages"]), q.get("consumers", 0), q["type"] == "quorum")

    def move(self, source, target):
        self.queues.setdefault(target, {"type": "classic", "messages": []})
        self.queues[target]["messages"] += self.queues[source]["messages"]
        self.queues[source]["messages"] = []
        self.log.append(("move", source, target))

    def delete(self, name):
        assert not self.queues[name]["messages"], "deleting %s with messages" % name
        del self.queues[name]
        self.log.append(("delete", name))

    def declare_quorum(self, name):
        q = self.queues.setdefault(name, {"type": "quorum", "messages": []})
        assert q["type"] == "quorum", "%s declared quorum while classic" % name
        self.log.append(("declare", name))


def classic(*messages, consumers=0):
    return {"type": "classic", "messages": list(messages), "consumers": consumers}


def test_empty_classic_queues_become_quorum_the_dead_letter_queue_first():
    broker = FakeQueues(mininova__dead=classic(), scheduler=classic(), conductor=classic(),
                        compute__h1=classic())
    done = rabbit_migrate.migrate(broker, NAMES)
    assert {n: q["type"] for n, q in broker.queues.items()} == dict.fromkeys(NAMES, "quorum")
    assert broker.log[:2] == [("delete", "mininova.dead"), ("declare", "mininova.dead")]
    assert done["conductor"] == "quorum, 0 messages moved"


def test_refused_while_a_daemon_consumes_nothing_changed():
    broker = FakeQueues(mininova__dead=classic(), scheduler=classic(consumers=1),
                        conductor=classic(), compute__h1=classic(consumers=2))
    with pytest.raises(exception.MigrationRefused) as raised:
        rabbit_migrate.migrate(broker, NAMES, move_pending=True)
    assert "scheduler (1 consumers), compute.h1 (2 consumers)" in raised.value.message
    assert "stop every mininova daemon" in raised.value.message
    assert broker.log == []


def test_refused_while_messages_wait_unless_moved():
    broker = FakeQueues(mininova__dead=classic(), scheduler=classic(), conductor=classic(),
                        compute__h1=classic("delete vm1", "stop vm2"))
    with pytest.raises(exception.MigrationRefused) as raised:
        rabbit_migrate.migrate(broker, NAMES)
    assert "compute.h1 (2)" in raised.value.message and "--move-pending" in raised.value.message
    assert broker.log == []
    done = rabbit_migrate.migrate(broker, NAMES, move_pending=True)
    assert broker.queues["compute.h1"] == {"type": "quorum", "messages": ["delete vm1", "stop vm2"]}
    assert "compute.h1.migrating" not in broker.queues
    assert done["compute.h1"] == "quorum, 2 messages moved"
    assert broker.log[-5:] == [("move", "compute.h1", "compute.h1.migrating"),
                               ("delete", "compute.h1"), ("declare", "compute.h1"),
                               ("move", "compute.h1.migrating", "compute.h1"),
                               ("delete", "compute.h1.migrating")]


def test_dry_run_changes_nothing():
    broker = FakeQueues(mininova__dead=classic(), scheduler=classic("x"), conductor=classic(),
                        compute__h1=classic())
    done = rabbit_migrate.migrate(broker, NAMES, move_pending=True, dry_run=True)
    assert broker.log == [] and done["scheduler"] == "quorum, 1 messages moved"


def test_run_again_after_an_interruption_finishes_the_job():
    """Interrupted after compute.h1 was deleted, its messages held aside;
    the others already quorum, one absent (its host never started)."""
    broker = FakeQueues(mininova__dead={"type": "quorum", "messages": []},
                        scheduler={"type": "quorum", "messages": []},
                        compute__h1__migrating=classic("delete vm1"))
    done = rabbit_migrate.migrate(broker, NAMES)
    assert done == {"mininova.dead": "already quorum", "scheduler": "already quorum",
                    "conductor": "absent (its daemon declares it)",
                    "compute.h1": "quorum, 1 messages moved"}
    assert broker.queues["compute.h1"] == {"type": "quorum", "messages": ["delete vm1"]}
    assert "compute.h1.migrating" not in broker.queues


def test_messages_signed_by_another_account_are_not_moved():
    """RabbitMQ lets only the account in a message's user_id publish it."""
    broker = FakeQueues(mininova__dead=classic(), scheduler=classic(), conductor=classic(),
                        compute__h1=classic("delete vm1@base.api", "stop vm2@operator"))
    with pytest.raises(exception.MigrationRefused) as raised:
        rabbit_migrate.migrate(broker, NAMES, move_pending=True)
    assert "sent by the accounts base.api" in raised.value.message
    assert "let them drain" in raised.value.message
    assert broker.log == []
