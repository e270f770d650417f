"""Classic -> quorum queues on a live cloud (``mininova-manage rabbit
migrate-to-quorum``), on a RabbitMQ node of the test's own: VMs exist before,
casts wait in a stopped compute's queue during the switch, the tool refuses
while a daemon runs and while messages wait (unless told to move them), moves
them, and afterwards the daemons, now with ``rabbit_quorum_queue = true``,
carry out the waiting casts and manage the old VMs and new ones."""
import json
import os
import subprocess

import kombu
import pytest
import sqlalchemy as sa

from common.rpc import kombu_transport
from mininova_lab.stack import Stack, domain_names, qemu_img_create, virsh
from mininova_lab.waiting import wait_for

pytestmark = pytest.mark.real_services("rabbitmq", "postgresql", "libvirt", "http")

DAEMONS = ("api", "scheduler", "conductor", "compute")


@pytest.fixture
def stack(rabbit_node, tmp_path):
    """On libvirtd (QEMU guests of a blank disk): the compute is restarted, and
    libvirt's test driver would forget its domains."""
    made = Stack(tmp_path / "stack", network="", broker=rabbit_node)
    try:
        made.start()
        base = os.path.join(made.workdir, "blank.qcow2")
        qemu_img_create(base, "1G")
        made.add_image("blank", base)
        yield made
    finally:
        ids = []
        try:
            engine = sa.create_engine(made.db_url)
            with engine.connect() as c:
                ids = list(c.execute(sa.text("SELECT id FROM instances")).scalars())
            engine.dispose()
        except Exception as e:
            print("  (no VM list for the clean-up: %s)" % e)
        for name in list(made.procs):
            made.stop_daemon(name)
        present = domain_names()
        for vm_id in ids:
            if "mininova-" + vm_id in present:
                virsh("destroy", "mininova-" + vm_id)
                virsh("undefine", "mininova-" + vm_id, "--managed-save")
        made.stop()
        print("  (logs of that stack: %s)" % made.logs)


def queues(node, vhost):
    """{name: (type, messages, consumers)}: the type as rabbitmqctl lists it,
    the counts from a passive declare (list_queues counts a quorum queue's
    messages some seconds late)."""
    out = node.rabbitmqctl("list_queues", "-p", vhost, "name", "type", "--no-table-headers")
    types = dict(line.split("\t") for line in out.splitlines())
    found = {}
    with kombu.Connection(kombu_transport.parse_url(node.rabbit_url(vhost))[0]) as conn:
        for name, qtype in types.items():
            if name.startswith("mininova.reply."):
                continue  # a caller's exclusive queue
            channel = conn.channel()
            _, messages, consumers = channel.queue_declare(name, passive=True)
            channel.close()
            found[name] = (qtype, messages, consumers)
    return found


def manage_migrate(stack, *args):
    """As the operator's account: where the daemons have role accounts
    (MININOVA_BROKER_ACCOUNTS=1), mininova-manage's own may not do it."""
    return stack.manage("rabbit", "migrate-to-quorum", "--transport-url",
                        stack.broker.rabbit_url(stack.vhost), *args)


def migrate(stack, *args):
    try:
        return json.loads(manage_migrate(stack, *args))
    except subprocess.CalledProcessError as e:
        raise AssertionError("refused: %s" % e.stderr) from None


def refused(stack, *args):
    with pytest.raises(subprocess.CalledProcessError) as raised:
        manage_migrate(stack, *args)
    return raised.value.stderr


def stop_all(stack):
    """The API and the computes first, the scheduler and the conductor last,
    once they have handled what the others sent them."""
    for name in ("api", "compute"):
        stack.stop_daemon(name)
    wait_for(lambda: not any(queues(stack.broker, stack.vhost)[q][1]
                             for q in ("scheduler", "conductor")), 60,
             what="the scheduler and conductor queues to drain")
    for name in ("scheduler", "conductor"):
        stack.stop_daemon(name)


def start_all(stack):
    for name in DAEMONS:
        stack.start_daemon(name)
    wait_for(stack._api_up, 30, what="the API")
    wait_for(stack._compute_up, 30, what="compute heartbeat")


def test_classic_to_quorum_on_a_live_cloud(rabbit_node, stack):
    vhost = stack.vhost
    kept, deleted, stopped = [stack.post("/v1/vms", {"name": n, "image": "blank",
                                                     "flavor": "m1.tiny"}).json()["vm"]["id"]
                              for n in ("kept", "deleted", "stopped")]
    for vm_id in (kept, deleted, stopped):
        stack.wait_status(vm_id, "ACTIVE", timeout=60)
    compute_queue = "compute." + stack.host
    service_queues = ["scheduler", "conductor", compute_queue, "mininova.dead"]
    assert {queues(rabbit_node, vhost)[q][0] for q in service_queues} == {"classic"}

    text = refused(stack)
    assert "daemons still consume from" in text and compute_queue in text, text

    # Casts for the compute wait in its queue while it is stopped.
    stack.stop_daemon("compute")
    assert stack.delete("/v1/vms/" + deleted).status_code == 202
    stack.action(stopped, {"stop": {}})
    for name in ("api", "scheduler", "conductor"):
        stack.stop_daemon(name)
    assert queues(rabbit_node, vhost)[compute_queue] == ("classic", 2, 0)

    text = refused(stack)
    assert "messages wait in %s (2)" % compute_queue in text, text
    assert "--move-pending" in text
    if stack.broker_passwords is not None:
        # Role accounts: the casts carry the API's user_id, which no other
        # account may publish: refused; the compute drains its queue instead.
        text = refused(stack, "--move-pending")
        assert "sent by the accounts %s.api" % stack.tag in text, text
        assert queues(rabbit_node, vhost)[compute_queue] == ("classic", 2, 0)
        start_all(stack)
        stack.wait_gone(deleted, timeout=60)
        stack.wait_status(stopped, "SHUTOFF", timeout=60)
        stop_all(stack)
        pending = 0
    else:
        plan = migrate(stack, "--move-pending", "--dry-run")
        assert plan["queues"][compute_queue] == "quorum, 2 messages moved"
        assert queues(rabbit_node, vhost)[compute_queue] == ("classic", 2, 0)
        pending = 2

    done = migrate(stack, "--move-pending")
    assert done["queues"][compute_queue] == "quorum, %d messages moved" % pending, done
    after = queues(rabbit_node, vhost)
    assert {q: after[q][0] for q in service_queues} == dict.fromkeys(service_queues, "quorum")
    assert after[compute_queue][1] == pending
    assert not [q for q in after if q.endswith(".migrating")], after
    again = migrate(stack)  # nothing left to do
    assert set(again["queues"].values()) == {"already quorum"}, again

    with open(stack.conf_path, "a") as f:
        f.write("\n[oslo_messaging_rabbit]\nrabbit_quorum_queue = true\n")
    start_all(stack)

    # The casts queued before the switch are carried out after it.
    stack.wait_gone(deleted, timeout=60)
    stack.wait_status(stopped, "SHUTOFF", timeout=60)
    stack.action(stopped, {"start": {}})
    stack.wait_status(stopped, "ACTIVE", timeout=60)
    stack.action(kept, {"reboot": {"type": "hard"}})
    new = stack.post("/v1/vms", {"name": "new", "image": "blank", "flavor": "m1.tiny"})
    assert new.status_code == 202, new.text
    stack.wait_status("new", "ACTIVE", timeout=60)
    stack.wait_status(kept, "ACTIVE", timeout=60)
    assert stack.delete_all_vms(timeout=60)
    assert {queues(rabbit_node, vhost)[q][0] for q in service_queues} == {"quorum"}
    assert "PRECONDITION_FAILED" not in stack.logs_text()
