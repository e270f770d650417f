"""FakeDriver: a hypervisor kept in a dict, no libvirt at all.

Domains are records in memory (``fake_domains``); nothing is written to disk but what the
contract asks for (a snapshot's file). Cheap enough for one compute process
per simulated host (bench/scale_sim.py). Moves work across hosts and
processes: what one host hands the next (disk_info, migrate_data) carries
all the fake needs. Power changes reach the ``lifecycle_callback`` as
libvirt's events would (``(instance_id, "started" | "stopped" | ...)``,
after the change, outside the driver's lock). Failures and slowness are
injected by small subclasses, never by patching.
"""
import contextlib
import dataclasses
import os
import struct
import threading

from common import exception, states
from common.fixed_networks import FixedNetwork
from nova_compute.virt import driver
from nova_compute.virt.fake_domains import GiB, MiB, FakeDomain, base_size, set_power

QCOW2_MAGIC = b"QFI\xfb"


def _no_step(_event):
    return contextlib.nullcontext()


class FakeDriver(driver.ComputeDriver):
    # What the host reports: libvirt's test:///default host, so that both
    # fakes offer the same room.
    vcpus = 16
    memory_mb = 3072
    live_migration_steps = 4     # progress reports of one live migration
    guest_ignores_acpi = False   # True: a clean shutdown waits out its timeout

    # The network every fake host's VMs join (a /16: room for a scale run).
    fixed_network = FixedNetwork(name="mininova", cidr="10.0.0.0/16", first="10.0.0.10",
                                 last="10.0.255.250", gateway="10.0.0.1", dns=("10.0.0.1",))

    def __init__(self, conf, lifecycle_callback=None):
        self.instances_path = os.path.abspath(conf.compute.instances_path)
        self.network_name = conf.compute.network_name
        self.dhcp_hosts = {}    # instance id -> (mac, address): the DHCP host entries
        self._callback = lifecycle_callback
        self.host_name = None
        self._domains = {}      # instance id -> FakeDomain (ours or not)
        self._set_aside = {}    # instance id -> FakeDomain kept for a revert
        self._lock = threading.RLock()

    # -- host ------------------------------------------------------------------

    def init_host(self, host):
        if not host:
            raise exception.Invalid(reason="init_host needs this host's name")
        self.host_name = host

    def cleanup_host(self):
        pass

    def get_host_resources(self):
        try:
            st = os.statvfs(self.instances_path)
            local_gb = st.f_blocks * st.f_frsize // GiB
        except OSError:
            local_gb = 100
        return {"vcpus": self.vcpus, "memory_mb": self.memory_mb, "local_gb": local_gb,
                "hypervisor_type": "fake", "hypervisor_version": 1, "virt_type": "fake",
                "cpu_info": {"arch": "x86_64"}}

    def define_foreign(self, instance_id, owner):
        """A domain another host (or a human: ``owner`` None) defined here."""
        spec = driver.InstanceSpec(id=instance_id, name="foreign", vcpus=1, memory_mb=1,
                                   root_gb=0, image_id="none", project_id="none")
        with self._lock:
            self._domains[instance_id] = FakeDomain(spec, owner, states.RUNNING)

    def external_power_change(self, instance_id, power_state):
        """The guest or a human changes the power state behind mininova's back."""
        with self._events() as events:
            dom = self._owned(instance_id)
            set_power(dom, power_state, events)

    # -- fixed IPs: DHCP host entries in a dict -------------------------------------

    def get_fixed_network(self, mac=None):
        if not self.network_name:
            return None
        mac = (mac or "").lower()
        with self._lock:
            taken = tuple(sorted(a for m, a in self.dhcp_hosts.values() if m != mac))
        return dataclasses.replace(self.fixed_network, name=self.network_name, taken=taken)

    def plug_fixed_ip(self, instance_id, mac, address):
        driver.validate_instance_id(instance_id)
        mac = mac.lower()
        with self._lock:
            for other, entry in list(self.dhcp_hosts.items()):
                if other != instance_id and entry[1] == address and entry[0] != mac:
                    raise exception.FixedIpInUse(address=address, network=self.network_name,
                                                 mac=entry[0])
                if other != instance_id and entry[0] == mac:
                    del self.dhcp_hosts[other]  # an older entry of this NIC
            self.dhcp_hosts[instance_id] = (mac, address)

    def unplug_fixed_ip(self, instance_id):
        driver.validate_instance_id(instance_id)
        with self._lock:
            self.dhcp_hosts.pop(instance_id, None)

    # -- lifecycle ---------------------------------------------------------------

    def spawn(self, instance, base_image_path, step=None):
        step = step or _no_step
        with self._events() as events:
            dom = self._domains.get(instance.id)
            if dom is not None and dom.owner != self.host_name:
                raise exception.BuildFailed(
                    instance=instance.id, reason="a domain with this UUID exists and belongs "
                    "to %s; not touching it" % (dom.owner or "no mininova host"))
            try:
                if dom is None:
                    with step("disk cloned"):
                        size = base_size(instance, base_image_path)
                    with step("domain defined"):
                        dom = self._domains[instance.id] = FakeDomain(
                            instance, self.host_name, virtual_size=max(instance.root_gb * GiB,
                                                                       size))
                with step("domain started"):
                    if dom.power_state != states.RUNNING:
                        self._start(dom, events)
            except Exception as exc:
                self._domains.pop(instance.id, None)
                if isinstance(exc, exception.BuildFailed):
                    raise
                raise exception.BuildFailed(instance=instance.id,
                                            reason=exception.describe(exc)) from exc

    def destroy(self, instance_id):
        driver.validate_instance_id(instance_id)
        with self._events() as events:
            dom = self._domains.get(instance_id)
            if dom is not None:
                if dom.owner != self.host_name:
                    raise exception.HypervisorError(
                        reason="domain %s belongs to %s, not %s; not touching it"
                        % (instance_id, dom.owner or "no mininova host", self.host_name))
                set_power(dom, states.SHUTDOWN, events)
                del self._domains[instance_id]
                events.append((instance_id, "undefined"))
            self._set_aside.pop(instance_id, None)

    def get_info(self, instance_id):
        with self._lock:
            dom = self._owned(instance_id)
            return {"power_state": dom.power_state, "vcpus": dom.spec.vcpus,
                    "memory_mb": dom.spec.memory_mb, "cpu_time_ns": 0}

    def list_instances(self):
        with self._lock:
            return [{"id": i, "name": d.spec.name, "power_state": d.power_state}
                    for i, d in self._domains.items() if d.owner == self.host_name]

    def get_console_output(self, instance_id, lines):
        with self._lock:
            kept = self._owned(instance_id).console[-lines:] if lines > 0 else []
        return "".join(line + "\n" for line in kept)

    def get_addresses(self, macs):
        """No DHCP: every NIC of a running domain of ours 'holds' an address
        in TEST-NET-2 derived from its MAC (as the libvirt test driver fake)."""
        wanted = {m.lower() for m in macs}
        with self._lock:
            return {d.spec.mac_address: "198.51.100.%d" % (int(d.spec.mac_address[-2:], 16)
                                                           % 250 + 2)
                    for d in self._domains.values()
                    if d.owner == self.host_name and d.power_state == states.RUNNING
                    and d.spec.mac_address and d.spec.mac_address in wanted}

    # -- power ---------------------------------------------------------------------

    def power_off(self, instance_id, timeout=0, cancel=None):
        with self._lock:
            self._owned(instance_id)
        if timeout > 0 and self.guest_ignores_acpi:
            # Waited outside the lock, as libvirt's clean shutdown polls.
            (cancel or threading.Event()).wait(timeout)
        with self._events() as events:
            set_power(self._owned(instance_id), states.SHUTDOWN, events)

    def power_on(self, instance_id):
        with self._events() as events:
            dom = self._owned(instance_id)
            if dom.power_state != states.RUNNING:
                self._start(dom, events)

    def reboot(self, instance_id, hard=False, timeout=0, cancel=None):
        with self._events() as events:
            dom = self._owned(instance_id)
            set_power(dom, states.SHUTDOWN, events)
            self._start(dom, events)

    def pause(self, instance_id):
        self._change(instance_id, states.PAUSED_POWER)

    def unpause(self, instance_id):
        self._change(instance_id, states.RUNNING, only_from=states.PAUSED_POWER)

    def suspend(self, instance_id):
        self._change(instance_id, states.SUSPENDED_POWER)

    def resume(self, instance_id):
        self.power_on(instance_id)

    # -- moves ---------------------------------------------------------------------

    def get_instance_disk_info(self, instance_id):
        with self._lock:
            dom = self._owned(instance_id)
            return {"path": "fake://%s/%s/disk" % (self.host_name, instance_id),
                    "format": "qcow2", "virtual_size": dom.virtual_size,
                    "actual_size": dom.actual_size, "image_id": dom.spec.image_id}

    def snapshot(self, instance_id, target_path):
        with self._lock:
            dom = self._owned(instance_id)
            virtual_size = dom.virtual_size
            # A qcow2 v2 header (what the image store checks), then who it is.
            content = (QCOW2_MAGIC + struct.pack(">IQIIQ", 2, 0, 0, 16, virtual_size)
                       + bytes(40) + ("mininova fake snapshot of %s: image %s, disk "
                                      "generation %d\n" % (instance_id, dom.spec.image_id,
                                                           dom.generation)).encode())
        tmp = "%s.part" % target_path
        try:
            with open(tmp, "wb") as f:
                f.write(content)
            os.replace(tmp, target_path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise exception.HypervisorError(reason="snapshot of %s: %s"
                                            % (instance_id, exc)) from exc
        return {"path": target_path, "format": "qcow2", "size": len(content),
                "virtual_size": virtual_size}

    def rebuild(self, instance, base_image_path, step=None):
        with self._events() as events:
            dom = self._domains.get(instance.id)
            if dom is not None and dom.owner == self.host_name:
                set_power(dom, states.SHUTDOWN, events)
                try:
                    size = base_size(instance, base_image_path)
                except Exception as exc:
                    del self._domains[instance.id]
                    events.append((instance.id, "undefined"))
                    raise exception.BuildFailed(instance=instance.id,
                                                reason=exception.describe(exc)) from exc
                dom.spec, dom.generation = instance, dom.generation + 1
                dom.virtual_size, dom.actual_size = max(instance.root_gb * GiB, size), 0
                dom.console = []
        self.spawn(instance, base_image_path, step=step)

    def migrate_disk_and_power_off(self, instance_id, dest_host, timeout=0, cancel=None):
        self.power_off(instance_id, timeout, cancel)
        with self._lock:
            dom = self._owned(instance_id)
            if not dom.leaving:
                dom.leaving = True
                self._set_aside[instance_id] = dataclasses.replace(dom, leaving=False)
            return {"source_host": self.host_name, "instance_id": instance_id,
                    "image_id": dom.spec.image_id, "virtual_size": dom.virtual_size,
                    "actual_size": dom.actual_size, "generation": dom.generation}

    def finish_migration(self, instance, disk_info, base_image_path, power_on=True):
        if disk_info.get("instance_id") != instance.id:
            raise exception.MigrationError(instance=instance.id,
                                           reason="disk_info is of %s" % (
                                               disk_info.get("instance_id"),))
        size = disk_info["virtual_size"]
        if instance.root_gb and instance.root_gb * GiB < size:
            raise exception.Invalid(reason="a disk of %d bytes cannot shrink to %d GiB"
                                    % (size, instance.root_gb))
        with self._events() as events:
            current = self._domains.get(instance.id)
            if current is not None and current.owner != self.host_name:
                raise exception.MigrationError(instance=instance.id,
                                               reason="a domain of another host is here")
            dom = self._domains[instance.id] = FakeDomain(
                instance, self.host_name, virtual_size=max(instance.root_gb * GiB, size),
                actual_size=disk_info["actual_size"], generation=disk_info["generation"])
            events.append((instance.id, "defined"))
            if power_on:
                self._start(dom, events)

    def confirm_migration(self, instance_id):
        with self._events() as events:
            self._set_aside.pop(instance_id, None)
            dom = self._domains.get(instance_id)
            if dom is not None and dom.owner == self.host_name and dom.leaving:
                del self._domains[instance_id]
                events.append((instance_id, "undefined"))

    def finish_revert_migration(self, instance, power_on=True):
        with self._events() as events:
            kept = self._set_aside.pop(instance.id, None)
            current = self._domains.get(instance.id)
            if kept is None:
                if current is not None and current.owner == self.host_name and not (
                        current.leaving or current.incoming):
                    return  # reverted already
                raise exception.MigrationError(instance=instance.id,
                                               reason="no disk was set aside here")
            dom = self._domains[instance.id] = dataclasses.replace(
                kept, spec=instance, power_state=states.SHUTDOWN)
            events.append((instance.id, "defined"))
            if power_on:
                self._start(dom, events)

    def pre_live_migration(self, instance, base_image_path, migrate_data):
        with self._events() as events:
            current = self._domains.get(instance.id)
            if current is not None and not (current.owner == self.host_name
                                            and current.incoming):
                raise exception.MigrationError(instance=instance.id,
                                               reason="a domain of it is here already")
            size = base_size(instance, base_image_path)
            self._domains[instance.id] = FakeDomain(
                instance, self.host_name, states.PAUSED_POWER, incoming=True,
                virtual_size=max(instance.root_gb * GiB, size))
            events.append((instance.id, "defined"))
        return dict(migrate_data or {}, dest_host=self.host_name)

    def live_migration(self, instance_id, dest_host, migrate_data, progress=None, abort=None):
        with self._lock:
            dom = self._owned(instance_id)
            if dom.power_state not in (states.RUNNING, states.PAUSED_POWER):
                raise exception.MigrationError(instance=instance_id,
                                               reason="only a running guest moves live, this "
                                               "one is %s" % dom.power_state)
            total = dom.spec.memory_mb * MiB + dom.actual_size
        steps = max(1, self.live_migration_steps)
        for n in range(steps + 1):
            if abort is not None and abort.is_set():
                raise exception.MigrationAborted(instance=instance_id)
            if progress is not None:
                done = total * n // steps
                progress({"processed_bytes": done, "remaining_bytes": total - done,
                          "total_bytes": total})
            self._copying(instance_id, n)
        with self._events() as events:
            dom = self._owned(instance_id)
            set_power(dom, states.SHUTDOWN, events)
            del self._domains[instance_id]
            events.append((instance_id, "undefined"))

    def post_live_migration_at_destination(self, instance_id, paused=False):
        with self._events() as events:
            try:
                dom = self._owned(instance_id)
            except exception.InstanceNotFound:
                raise exception.MigrationError(instance=instance_id,
                                               reason="no incoming domain here")
            dom.incoming = False
            want = states.PAUSED_POWER if paused else states.RUNNING
            if dom.power_state != want:
                set_power(dom, want, events)

    def rollback_live_migration_at_destination(self, instance_id):
        self.destroy(instance_id)

    # -- overridable steps (failure injection) --------------------------------------

    def _start(self, dom, events):
        set_power(dom, states.RUNNING, events)
        dom.console.append("fake console: %s booted" % dom.spec.name)

    def _copying(self, instance_id, n):
        """Called after each of the live migration's progress reports."""

    # -- helpers -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _events(self):
        """Holds the lock for the block; then sends the events it collected."""
        events = []
        try:
            with self._lock:
                yield events
        finally:
            if self._callback is not None:
                for instance_id, event in events:
                    self._callback(instance_id, event)

    def _owned(self, instance_id):
        dom = self._domains.get(instance_id)
        if dom is None or dom.owner != self.host_name:
            raise exception.InstanceNotFound(instance=instance_id)
        return dom

    def _change(self, instance_id, power_state, only_from=None):
        with self._events() as events:
            dom = self._owned(instance_id)
            if only_from is None or dom.power_state == only_from:
                set_power(dom, power_state, events)


class FailingSpawnDriver(FakeDriver):
    """Every start of a domain fails: spawn must leave nothing behind."""

    def _start(self, dom, events):
        raise exception.HypervisorError(reason="injected failure starting %s" % dom.spec.id)
