"""LibvirtDriver: mininova VMs as libvirt domains on QEMU (TCG) or KVM.

The driver contract (nova_compute/virt/driver.py) on LibvirtBase's lookups,
locks and spawn steps (base.py). Every method acts on a domain this host
owns and leaves any other alone. The work on a domain is in power_ops,
live_migration and guest, on files in instance_files and imagebackend.
"""
import contextlib
import logging
import os
import shutil
import time

import libvirt

from common import exception
from nova_compute.virt import driver
from nova_compute.virt.libvirt import disk_transfer
from nova_compute.virt.libvirt import guest
from nova_compute.virt.libvirt import host as vhost
from nova_compute.virt.libvirt import imagebackend
from nova_compute.virt.libvirt import live_migration
from nova_compute.virt.libvirt import network
from nova_compute.virt.libvirt import power_ops
from nova_compute.virt.libvirt.base import LibvirtBase, domain_name, no_step, reason
from nova_compute.virt.libvirt.instance_files import tail_lines

LOG = logging.getLogger(__name__)


class LibvirtDriver(LibvirtBase, driver.ComputeDriver):
    # -- host ----------------------------------------------------------------------

    def init_host(self, host):
        if not host:
            raise exception.Invalid(reason="init_host needs this host's name")
        self.host_name = host
        os.makedirs(self.instances_path, exist_ok=True)
        self._host = vhost.Host(self.uri, self._lifecycle_callback, pool_size=self._pool_size)
        self._host.get_connection()  # fail at start-up, not at the first build
        self._host.fill_pool()
        self.virt_type = self._detect_virt_type()
        # cache='none' needs O_DIRECT; tmpfs and some others lack it.
        if not imagebackend.supports_direct_io(self.instances_path):
            self._disk_cache = "writeback"
        LOG.info("libvirt driver ready: uri=%s virt_type=%s host=%s instances=%s",
                 self.uri, self.virt_type, host, self.instances_path)

    def cleanup_host(self):
        if self._host is not None:
            self._host.close()

    def get_host_resources(self):
        conn = self._connection()
        try:
            arch, memory_mb, cpus, mhz, nodes, sockets, cores, threads = conn.getInfo()[:8]
            memory_mb = vhost.total_memory_mb(conn, memory_mb)
            hv_type, hv_version = conn.getType(), conn.getVersion()
            st = os.statvfs(self.instances_path)
        except (libvirt.libvirtError, OSError) as exc:
            raise exception.HypervisorError(reason="host resources: %s" % reason(exc)) from exc
        return {
            "vcpus": cpus,
            "memory_mb": memory_mb,
            "local_gb": st.f_blocks * st.f_frsize // imagebackend.GiB,
            "hypervisor_type": hv_type,
            "hypervisor_version": hv_version,
            "virt_type": self.virt_type,
            "cpu_info": {"arch": arch, "mhz": mhz, "numa_nodes": nodes,
                         "sockets": sockets, "cores": cores, "threads": threads},
        }

    # -- lifecycle -------------------------------------------------------------------

    def spawn(self, instance, base_image_path, step=None):
        step = step or no_step
        with self._instance(instance.id):
            try:
                dom, owner = self._lookup(instance.id)
            except libvirt.libvirtError as exc:
                raise exception.BuildFailed(instance=instance.id, reason=reason(exc)) from exc
            if dom is not None and owner != self.host_name:
                raise exception.BuildFailed(
                    instance=instance.id, reason="a domain with this UUID exists and "
                    "belongs to %s; not touching it" % (owner or "no mininova host"))
            started = time.monotonic()
            try:
                if dom is None:
                    dom = self._build(instance, base_image_path, step)
                with step("domain started"):
                    self._ensure_running(dom)
            except BaseException as exc:
                self._clean_up_failed_spawn(instance.id, exc)
            LOG.info("spawned %s (%s) in %.2f s", instance.id, domain_name(instance.id),
                     time.monotonic() - started)

    def destroy(self, instance_id):
        driver.validate_instance_id(instance_id)
        with self._instance(instance_id):
            try:
                self._delete_domain_and_files(instance_id)
            except (libvirt.libvirtError, OSError) as exc:
                raise exception.HypervisorError(
                    reason="destroy of %s: %s" % (instance_id, reason(exc))) from exc

    def get_info(self, instance_id):
        try:
            driver.validate_instance_id(instance_id)
        except exception.Invalid:
            raise exception.InstanceNotFound(instance=instance_id)
        self._connection()
        with self._host.borrowed_connection():
            try:
                dom, owner = self._lookup(instance_id)
                if dom is None or owner != self.host_name:
                    raise exception.InstanceNotFound(instance=instance_id)
                state, max_mem_kib, _mem, vcpus, cpu_time = dom.info()[:5]
                power_state = guest.domain_power_state(dom)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    raise exception.InstanceNotFound(instance=instance_id) from exc
                raise exception.HypervisorError(
                    reason="info of %s: %s" % (instance_id, exc)) from exc
        return {"power_state": power_state,
                "vcpus": vcpus, "memory_mb": max_mem_kib // 1024, "cpu_time_ns": cpu_time}

    def list_instances(self):
        self._connection()
        result = []
        try:
            domains = self._host.list_domains()
        except libvirt.libvirtError as exc:
            raise exception.HypervisorError(reason="listing domains: %s" % exc) from exc
        for dom in domains:
            try:
                meta = self._metadata(dom)
                if meta is None or meta.host != self.host_name:
                    continue
                result.append({"id": dom.UUIDString(), "name": meta.name,
                               "power_state": guest.domain_power_state(dom)})
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    continue  # undefined between list and look
                raise exception.HypervisorError(reason="listing domains: %s" % exc) from exc
        return result

    def get_console_output(self, instance_id, lines):
        dom, owner = self._lookup(instance_id)
        if dom is None or owner != self.host_name:
            raise exception.InstanceNotFound(instance=instance_id)
        return tail_lines(self.files.console_log(instance_id), lines)

    def get_addresses(self, macs):
        wanted = {m.lower() for m in macs}
        if not wanted:
            return {}
        try:
            leases = self._dhcp_leases()
        except libvirt.libvirtError as exc:
            raise exception.HypervisorError(reason="DHCP leases: %s" % exc) from exc
        # A lease of a deleted domain can linger with a reused address; the
        # MAC is what identifies our NIC, and the newest lease wins.
        return {mac: ip for mac, ip in leases if mac in wanted}

    def get_fixed_network(self, mac=None):
        if not self.network_name:
            return None
        with self._network("reading") as net:
            return network.fixed_network(net.XMLDesc(0), self._dhcp_leases(), mac)

    def plug_fixed_ip(self, instance_id, mac, address):
        driver.validate_instance_id(instance_id)
        with self._network("adding a DHCP host entry to") as net:
            network.plug(net, instance_id, mac, address)

    def unplug_fixed_ip(self, instance_id):
        driver.validate_instance_id(instance_id)
        if self.network_name:
            with self._network("removing a DHCP host entry from") as net:
                network.unplug(net, instance_id)

    @contextlib.contextmanager
    def _network(self, what):
        try:
            yield self._connection().networkLookupByName(self.network_name)
        except libvirt.libvirtError as exc:
            raise exception.HypervisorError(
                reason="%s network %s: %s" % (what, self.network_name, exc)) from exc

    # -- power -------------------------------------------------------------------------

    def power_off(self, instance_id, timeout=0, cancel=None):
        with self._owned(instance_id, "power off") as dom:
            power_ops.power_off(dom, timeout, cancel, self._clean_shutdown)

    def power_on(self, instance_id):
        with self._owned(instance_id, "power on") as dom:
            if dom.state()[0] not in guest.RUNNING_STATES:
                self._ensure_running(dom)

    def reboot(self, instance_id, hard=False, timeout=0, cancel=None):
        with self._owned(instance_id, "reboot") as dom:
            power_ops.reboot(dom, self._ensure_running, hard, timeout, cancel,
                             self._clean_shutdown)

    def pause(self, instance_id):
        with self._owned(instance_id, "pause") as dom:
            power_ops.pause(dom)

    def unpause(self, instance_id):
        with self._owned(instance_id, "unpause") as dom:
            power_ops.unpause(dom)

    def suspend(self, instance_id):
        with self._owned(instance_id, "suspend") as dom:
            power_ops.suspend(dom)

    def resume(self, instance_id):
        """Start from the managed-save image: the guest goes on where it was."""
        self.power_on(instance_id)

    # -- moves -------------------------------------------------------------------------

    def get_instance_disk_info(self, instance_id):
        with self._owned(instance_id, "disk info") as dom:
            path = self.files.disk(instance_id)
            virtual, actual = self._disk_sizes(path)
            return {"path": path, "format": "qcow2", "virtual_size": virtual,
                    "actual_size": actual, "image_id": self._metadata(dom).image_id}

    def snapshot(self, instance_id, target_path):
        tmp = "%s.part" % target_path
        with self._owned(instance_id, "snapshot") as dom:
            state = dom.state()[0]
            active = state in guest.RUNNING_STATES or state == libvirt.VIR_DOMAIN_PAUSED
            if active:  # its disk is consistent only once QEMU stopped (Nova's cold snapshot)
                dom.managedSave(0)
            try:
                self._convert_disk(self.files.disk(instance_id), tmp)
                os.replace(tmp, target_path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            finally:
                if state == libvirt.VIR_DOMAIN_PAUSED:
                    self._restore_paused(dom)  # saved paused: restored paused, never run
                elif active:
                    self._ensure_running(dom)  # restores the saved memory
            virtual, _ = self._disk_sizes(target_path)
        return {"path": target_path, "format": "qcow2",
                "size": os.path.getsize(target_path), "virtual_size": virtual}

    def _restore_paused(self, dom):
        """Start a domain managed-saved while paused: it comes back paused."""
        deadline = time.monotonic() + self.spawn_timeout
        guest.run_before(deadline, self.spawn_timeout, lambda: self._launch_domain(dom),
                         "restoring the domain")
        while dom.state()[0] != libvirt.VIR_DOMAIN_PAUSED:
            if dom.state()[0] in guest.RUNNING_STATES:
                dom.suspend()
            elif time.monotonic() > deadline:
                raise exception.HypervisorError(reason="domain not back paused %d s after "
                                                "its restore" % self.spawn_timeout)
            else:
                time.sleep(0.01)

    def rebuild(self, instance, base_image_path, step=None):
        try:
            self.destroy(instance.id)
        except exception.HypervisorError as exc:
            raise exception.BuildFailed(instance=instance.id, reason=exc.message) from exc
        self.spawn(instance, base_image_path, step=step)

    def migrate_disk_and_power_off(self, instance_id, dest_host, timeout=0, cancel=None):
        with self._owned(instance_id, "migrate disk") as dom:
            power_ops.power_off(dom, timeout, cancel, self._clean_shutdown)
            if dom.hasManagedSaveImage(0):  # the memory cannot follow a cold move
                dom.managedSaveRemove(0)
            try:
                aside = self.files.set_aside(instance_id)
            except OSError as exc:
                raise exception.MigrationError(instance=instance_id,
                                               reason="setting its disk aside: %s" % exc)
            path = os.path.join(aside, "disk")
            virtual, actual = self._disk_sizes(path)
            return {"source_host": self.host_name, "source_uri": self._peer_uri(),
                    "instance_id": instance_id, "path": path, "format": "qcow2",
                    "file_size": os.path.getsize(path), "virtual_size": virtual,
                    "actual_size": actual, "image_id": self._metadata(dom).image_id}

    def finish_migration(self, instance, disk_info, base_image_path, power_on=True):
        size = imagebackend.overlay_size(instance.root_gb, 0)
        if instance.root_gb and size < disk_info["virtual_size"]:
            raise exception.Invalid(reason="a disk of %d bytes cannot shrink to %d GiB"
                                    % (disk_info["virtual_size"], instance.root_gb))
        with self._instance(instance.id, "finish migration"):
            dom, owner = self._lookup(instance.id)
            if dom is not None and owner != self.host_name:
                raise exception.MigrationError(instance=instance.id, reason="a domain of "
                                               "%s has this UUID here" % owner)
            if dom is not None and self._finished_here(dom, instance):
                if power_on:
                    self._ensure_running(dom)
                return
            try:
                self.files.fresh_dir(instance.id)
                self._adopt_disk(disk_info, self.files.disk(instance.id),
                                 base_image_path, max(size, disk_info["virtual_size"]))
                dom = self._define(instance)
                if power_on:
                    self._ensure_running(dom)
            except Exception as exc:
                self._undo_arrival(instance.id)
                raise exception.MigrationError(instance=instance.id,
                                               reason=reason(exc)) from exc

    def confirm_migration(self, instance_id):
        with self._instance(driver.validate_instance_id(instance_id), "confirm migration"):
            disk_transfer.remove_pool(self._connection(), instance_id)  # a destination's leftover
            shutil.rmtree(self.files.set_aside_dir(instance_id), ignore_errors=True)
            dom, owner = self._lookup(instance_id)
            if (dom is not None and owner == self.host_name
                    and not os.path.isdir(self.files.dir(instance_id))):
                guest.power_off(dom)  # the source's definition: the VM lives elsewhere
                guest.undefine(dom)

    def finish_revert_migration(self, instance, power_on=True):
        with self._instance(instance.id, "revert migration"):
            dom, owner = self._lookup(instance.id)
            if dom is not None and owner != self.host_name:
                raise exception.MigrationError(instance=instance.id, reason="a domain of "
                                               "%s has this UUID here" % owner)
            if dom is not None:  # the source's definition, or the resized copy (same host)
                guest.power_off(dom)
                if dom.hasManagedSaveImage(0):  # saved with the flavor being reverted
                    dom.managedSaveRemove(0)
            disk_transfer.remove_pool(self._connection(), instance.id)
            if not self.files.take_back(instance.id) and not self.files.has_disk(instance.id):
                raise exception.MigrationError(instance=instance.id,
                                               reason="no disk was set aside here")
            dom = self._define(instance)
            if power_on:
                self._ensure_running(dom)

    def pre_live_migration(self, instance, base_image_path, migrate_data):
        with self._instance(instance.id, "pre live migration"):
            dom, _owner = self._lookup(instance.id)
            if dom is not None or os.path.exists(self.files.dir(instance.id)):
                raise exception.MigrationError(
                    instance=instance.id, reason="a domain or directory of it is on %s "
                    "already (instances_path shared between hosts is not supported)"
                    % self.host_name)
            try:
                self.files.fresh_dir(instance.id)
                self._create_overlay(instance, base_image_path, self.files.disk(instance.id))
                if instance.config_drive is not None:  # QEMU opens it here, not copied
                    self._write_config_drive(instance)
            except Exception as exc:
                self.files.remove(instance.id, set_aside_too=False)
                raise exception.MigrationError(instance=instance.id,
                                               reason=reason(exc)) from exc
        return dict(migrate_data or {}, dest_host=self.host_name, dest_uri=self._peer_uri(),
                    dest_dir=self.files.dir(instance.id))

    def live_migration(self, instance_id, dest_host, migrate_data, progress=None, abort=None):
        with self._owned(instance_id, "live migration") as dom:
            xml = live_migration.destination_xml(
                dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE), dest_host,
                self.files.dir(instance_id), migrate_data["dest_dir"])
            params = {libvirt.VIR_MIGRATE_PARAM_DEST_XML: xml,
                      libvirt.VIR_MIGRATE_PARAM_PERSIST_XML: xml,
                      libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS: ["vda"]}
            self._migrate_live(dom, migrate_data["dest_uri"], params, progress, abort)
            self.files.remove(instance_id, set_aside_too=False)

    def settle_live_migration(self, instance_id):
        dom, _owner = self._lookup(instance_id)
        if dom is not None:
            live_migration.settle(dom)
        return self.instance_exists(instance_id)

    def post_live_migration_at_destination(self, instance_id, paused=False):
        with self._owned(instance_id, "post live migration") as dom:
            if not dom.isPersistent():
                self._define_domain(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE))
            state = dom.state()[0]
            # libvirt keeps a guest paused at the source paused here.
            if state not in guest.RUNNING_STATES and not (
                    paused and state == libvirt.VIR_DOMAIN_PAUSED):
                self._ensure_running(dom)
            if paused and dom.state()[0] != libvirt.VIR_DOMAIN_PAUSED:
                dom.suspend()

    def rollback_live_migration_at_destination(self, instance_id):
        self.destroy(instance_id)

    # -- move helpers -------------------------------------------------------------

    def _finished_here(self, dom, instance):
        """A finish_migration of ``instance`` already ran here: the domain is
        defined on a disk of its own with the new flavor."""
        meta = self._metadata(dom)
        return (meta is not None and self.files.has_disk(instance.id)
                and (meta.vcpus, meta.memory_mb, meta.root_gb)
                == (instance.vcpus, instance.memory_mb, instance.root_gb))

    def _undo_arrival(self, instance_id):
        """After a failed finish_migration: no domain, no directory here (a
        directory set aside on this host, the source's, stays)."""
        try:
            dom, owner = self._lookup(instance_id)
            if dom is not None and owner == self.host_name:
                guest.power_off(dom)
                guest.undefine(dom)
        finally:
            self.files.remove(instance_id, set_aside_too=False)

