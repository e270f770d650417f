"""A compute agent on a lab sim host (deploy/lab/sim-host.sh) of a Stack:
its config (RabbitMQ and the API reached over the host's veth, its own
instances and image cache under the stack's workdir, on this machine's
filesystem, which every sim host shares) and its process in the host's
network namespace. With ``private=True`` it runs in the host's mount
namespace too, with its instances in PRIVATE_INSTANCES there: the same path
on every host, each host's own directory (as separate machines have), which
no other host's compute or libvirtd can see."""
import contextlib
import os
import sys

import sqlalchemy as sa

from mininova_lab import services
from mininova_lab.sim_host import SimHost
from mininova_lab.stack import ROOT, Stack, qemu_img_create
from mininova_lab.waiting import wait_for


PRIVATE_INSTANCES = "/var/lib/libvirt/mininova/instances"


def compute_conf(stack, sim, extra="", network="mininova", private=False):
    """The path of ``sim``'s compute config; ``extra``: more lines for its
    [compute] section; ``network``: the guests' libvirt network ("": no NIC,
    for a sim host made without guest_network). Other sim hosts' libvirtd
    reach this one's at its MIGRATION_URI (live migration, and the disk of
    a VM resized or migrated away); ``private``: its instances in
    PRIVATE_INSTANCES of its own mount namespace."""
    workdir = os.path.join(stack.workdir, sim.name)
    instances = PRIVATE_INSTANCES if private else os.path.join(workdir, "instances")
    os.makedirs(workdir, exist_ok=True)
    conf = os.path.join(workdir, "compute.conf")
    # With the stack's broker accounts: this host's own (it overrides the
    # stack's [compute] transport_url, the stack's own compute's account).
    own_account = ""
    if stack.broker_passwords is not None:
        user = "%s.compute.%s" % (stack.tag, sim.name)
        stack.add_broker_accounts([user])
        own_account = "transport_url = %s\n" % stack.broker_url(user, host=sim.gateway_ip)
    with open(conf, "w") as f:
        f.write(f"""[DEFAULT]
host = {sim.name}
transport_url = {services.rabbit_url(stack.vhost, host=sim.gateway_ip)}

[compute]
{own_account}instances_path = {instances}
image_cache_path = {workdir}/_base
image_api_url = http://{sim.gateway_ip}:{stack.port}
network_name = {network}
{extra}

[libvirt]
connection_uri = {sim.libvirt_uri}
virt_type = qemu
live_migration_inbound_uri = {sim.facts.get("MIGRATION_URI", "")}
""")
    return conf


def instances_path(stack, sim, private=False):
    """The host's instances directory, seen from here (the root namespaces)."""
    if private:
        return sim.private_path(PRIVATE_INSTANCES)
    return os.path.join(stack.workdir, sim.name, "instances")


def cache_path(stack, sim):
    return os.path.join(stack.workdir, sim.name, "_base")


def start_compute(stack, sim, extra="", network="mininova", private=False):
    """The compute agent's process (its logs in the stack's logs)."""
    log = open(os.path.join(stack.logs, "compute-%s.out" % sim.name), "ab")
    conf = compute_conf(stack, sim, extra, network, private)
    return sim.popen([sys.executable, "-m", "nova_compute.cmd", "--config-file",
                      stack.conf_path, "--config-file", conf,
                      "--log-file", os.path.join(stack.logs, "compute-%s.log" % sim.name)],
                     private=private, cwd=ROOT, stdout=log, stderr=log,
                     stdin=open(os.devnull))


@contextlib.contextmanager
def lab_hosts(stack, names, indexes, base_dir, start=start_compute, guest_network=False,
              timeout=60):
    """Sim hosts named ``names`` (plus the stack's tag) at ``indexes``, each up
    with the stack's API forwarded and a compute agent ``start(stack, sim)``
    in ``stack.computes`` (a test may replace one there), all seen up by the
    stack; yields the hosts. On exit the agents are stopped and the hosts
    brought down, whatever happened."""
    sims = []
    stack.computes = {}
    try:
        for name, index in zip(names, indexes):
            sim = SimHost("%s-%s" % (name, stack.tag[-4:]), index=index, base_dir=base_dir,
                          guest_network=guest_network)
            sim.up()
            sim.forward(stack.port)
            sims.append(sim)
            stack.computes[sim.name] = start(stack, sim)
        wait_for(lambda: {s.name for s in sims} <= stack.computes_up(), timeout,
                 what="%d sim compute hosts up" % len(sims))
        yield sims
    finally:
        for proc in stack.computes.values():
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(20)
                except Exception:
                    proc.kill()
        for sim in sims:
            sim.down()


def tiny_image():
    """The bootable test guest (deploy/build-tiny-image.sh), which lab tests need."""
    tiny = os.environ.get("MININOVA_TINY_IMAGE", "/var/cache/mininova/tiny.qcow2")
    if not os.path.exists(tiny):
        raise RuntimeError("%s is missing: deploy/build-tiny-image.sh builds it" % tiny)
    return tiny


def with_grown_flavor(tiny):
    """A lab_stack ``setup``: the image "tiny" and a flavor "m1.grown" (1 vCPU,
    192 MB, 2 GB) that resizes resize to."""
    def setup(stack):
        stack.add_image("tiny", tiny)
        stack.manage("flavor", "create", "m1.grown", "--vcpus", "1", "--ram", "192",
                     "--disk", "2")
    return setup


@contextlib.contextmanager
def lab_stack(workdir, names, indexes, base_dir, start=start_compute, guest_network=False,
              stack_options=None, start_options=None, setup=None, delete_timeout=120):
    """A Stack with no compute of its own (``Stack(workdir, **stack_options)``,
    ``start(compute=False, **start_options)``), ``setup(stack)`` run once it
    is up, then lab_hosts' sim hosts in ``stack.sims`` and an engine on its
    database in ``stack.engine``; yields the stack. On exit its VMs are
    deleted, the hosts brought down and the stack stopped, whatever happened."""
    stack = Stack(workdir, **(stack_options or {}))
    stack.engine = None
    try:
        stack.start(compute=False, **(start_options or {}))
        if setup is not None:
            setup(stack)
        with lab_hosts(stack, names, indexes, base_dir, start,
                       guest_network=guest_network) as sims:
            stack.sims = sims
            stack.engine = sa.create_engine(stack.db_url)
            try:
                yield stack
            finally:
                stack.delete_all_vms(timeout=delete_timeout)
    finally:
        if stack.engine is not None:
            stack.engine.dispose()
        stack.stop()


def settled(stack, vm_id, status, host, timeout):
    """Wait until VM ``vm_id`` is ``status`` with no task on ``host``; its
    body. An ERROR on the way fails at once."""
    def check():
        vm = stack.vm(vm_id)
        assert vm is not None and vm["status"] != "ERROR", vm
        return vm if (vm["status"], vm["task_state"], vm["host"]) == (status, None, host) \
            else None
    return wait_for(check, timeout, 0.5, what="VM %s %s on %s" % (vm_id, status, host))


@contextlib.contextmanager
def fake_stack(workdir, extra_conf="", apis=1):
    """A started Stack whose compute runs the fake driver (no network), with
    a 64 MB image "tiny"; stopped on exit. ``extra_conf``: more config lines;
    ``apis``: API processes (behind HAProxy when > 1)."""
    stack = Stack(os.path.join(str(workdir), "stack"), compute_driver="fake", network="",
                  debug=False, extra_conf=extra_conf)
    try:
        stack.start(apis=apis)
        image = os.path.join(str(workdir), "tiny.qcow2")
        qemu_img_create(image, "64M")
        stack.add_image("tiny", image)
        yield stack
    finally:
        stack.stop()
