"""LibvirtDriver: mininova VMs as libvirt domains on QEMU (TCG) or KVM.

A domain is ours when its <mininova:instance> metadata names our host; every
method looks that up first and leaves any other domain alone. Spawn steps are
small methods (_create_overlay, _define_domain, _launch_domain) so the fake
driver and its failure-injecting subclasses can replace one step each.
"""
import contextlib
import datetime
import logging
import os
import shutil
import threading
import time
import weakref

import libvirt

from common import exception
from nova_compute.virt import driver
from nova_compute.virt.libvirt import config as vconfig
from nova_compute.virt.libvirt import guest
from nova_compute.virt.libvirt import host as vhost
from nova_compute.virt.libvirt import imagebackend
from nova_compute.virt.libvirt import power_ops

LOG = logging.getLogger(__name__)

DOMAIN_NAME_PREFIX = "mininova-"


def domain_name(instance_id):
    return DOMAIN_NAME_PREFIX + instance_id


def _total_memory_mb(conn, fallback_mb):
    """getInfo()'s memory is what sysfs shows for the NUMA node(s), which can be
    far below the host's RAM (5.5 of 24 GB on a lab VM here); the node memory
    stats have the real total. The test driver has no stats: keep getInfo's."""
    try:
        return conn.getMemoryStats(libvirt.VIR_NODE_MEMORY_STATS_ALL_CELLS)["total"] // 1024
    except libvirt.libvirtError:
        return fallback_mb


def _no_step(_event):
    return contextlib.nullcontext()


def tail_lines(path, lines, max_bytes=1024 * 1024):
    """The last ``lines`` lines of a text file (reading at most max_bytes)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except FileNotFoundError:
        return ""
    kept = data.decode("utf-8", errors="replace").splitlines()[-lines:]
    return "".join(line + "\n" for line in kept)


def _reason(exc):
    if isinstance(exc, exception.MininovaException):
        return exc.message
    if isinstance(exc, libvirt.libvirtError):
        return "libvirt: %s" % exc
    return "%s: %s" % (type(exc).__name__, exc)


class LibvirtDriver(power_ops.PowerOpsMixin, driver.ComputeDriver):
    def __init__(self, conf, lifecycle_callback=None):
        self.uri = self._connection_uri(conf)
        self.instances_path = os.path.abspath(conf.compute.instances_path)
        self.spawn_timeout = conf.compute.spawn_timeout
        self.network_name = conf.compute.network_name
        self._configured_virt_type = conf.libvirt.virt_type
        self._pool_size = self._connection_pool_size(conf)
        self._lifecycle_callback = lifecycle_callback
        self._host = None
        self.host_name = None
        self.virt_type = None
        self._disk_cache = "none"
        self._locks = weakref.WeakValueDictionary()
        self._locks_lock = threading.Lock()
        self._base_sizes = {}  # (path, inode, size, mtime_ns) -> virtual size

    # -- overridable choices -------------------------------------------------

    def _connection_uri(self, conf):
        return conf.libvirt.connection_uri

    def _connection_pool_size(self, conf):
        return conf.libvirt.connection_pool_size

    def _detect_virt_type(self):
        return vhost.detect_virt_type(self._configured_virt_type)

    def _create_overlay(self, instance, base_image_path, overlay_path):
        size = imagebackend.overlay_size(instance.root_gb, self._base_size(base_image_path))
        imagebackend.create_overlay(base_image_path, overlay_path, size)

    def _guest_devices(self, instance, disk_path):
        devices = [vconfig.DiskConfig(disk_path, cache=self._disk_cache),
                   vconfig.SerialConsoleConfig(self._console_log(instance.id))]
        if instance.mac_address and self.network_name:
            devices.append(vconfig.InterfaceConfig(instance.mac_address, self.network_name))
        return devices

    def _dhcp_leases(self):
        """[(mac, ip)] of the network's current DHCP leases."""
        if not self.network_name:
            return []
        net = self._connection().networkLookupByName(self.network_name)
        return [(lease["mac"].lower(), lease["ipaddr"]) for lease in net.DHCPLeases()
                if lease.get("type") == libvirt.VIR_IP_ADDR_TYPE_IPV4]

    def _define_domain(self, xml):
        return self._host.get_connection().defineXML(xml)

    def _launch_domain(self, dom):
        dom.create()

    # -- ComputeDriver ---------------------------------------------------------

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
            memory_mb = _total_memory_mb(conn, memory_mb)
            hv_type, hv_version = conn.getType(), conn.getVersion()
            st = os.statvfs(self.instances_path)
        except (libvirt.libvirtError, OSError) as exc:
            raise exception.HypervisorError(reason="host resources: %s" % _reason(exc)) from exc
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

    def spawn(self, instance, base_image_path, step=None):
        step = step or _no_step
        self._connection()
        with self._host.borrowed_connection(), self._instance_lock(instance.id):
            try:
                dom, owner = self._lookup(instance.id)
            except libvirt.libvirtError as exc:
                raise exception.BuildFailed(instance=instance.id, reason=_reason(exc)) from exc
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
        self._connection()
        with self._host.borrowed_connection(), self._instance_lock(instance_id):
            try:
                self._delete_domain_and_files(instance_id)
            except (libvirt.libvirtError, OSError) as exc:
                raise exception.HypervisorError(
                    reason="destroy of %s: %s" % (instance_id, _reason(exc))) from exc

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
        return tail_lines(self._console_log(instance_id), lines)

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

    # -- spawn steps -----------------------------------------------------------

    def _build(self, instance, base_image_path, step):
        if not os.path.isabs(base_image_path):
            raise exception.Invalid(reason="base image path must be absolute, not %r"
                                    % base_image_path)
        if not os.path.isfile(base_image_path):
            raise exception.ImageUnavailable(image=instance.image_id,
                                             reason="no base file %s" % base_image_path)
        instance_dir = self._instance_dir(instance.id)
        # No domain yet, so a directory here is from a build that died before
        # define: its overlay never booted and may be half written.
        shutil.rmtree(instance_dir, ignore_errors=True)
        os.makedirs(instance_dir, mode=0o700)  # the guest's disk: the owner (QEMU runs as root) only
        disk_path = os.path.join(instance_dir, "disk")
        with step("disk cloned"):
            self._create_overlay(instance, base_image_path, disk_path)
        guest_config = vconfig.GuestConfig(
            virt_type=self.virt_type, uuid=instance.id, name=domain_name(instance.id),
            memory_mb=instance.memory_mb, vcpus=instance.vcpus,
            metadata=self._instance_metadata(instance),
            devices=self._guest_devices(instance, disk_path))
        with step("domain defined"):
            return self._define_domain(guest_config.to_xml())

    def _instance_metadata(self, instance):
        created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        return vconfig.InstanceMetadata(
            id=instance.id, name=instance.name, host=self.host_name,
            project_id=instance.project_id, vcpus=instance.vcpus,
            memory_mb=instance.memory_mb, root_gb=instance.root_gb,
            image_id=instance.image_id, created=created)

    def _ensure_running(self, dom):
        state = dom.state()[0]
        if state in guest.RUNNING_STATES:
            return
        deadline = time.monotonic() + self.spawn_timeout
        if state == libvirt.VIR_DOMAIN_PAUSED:
            dom.resume()
        else:
            guest.run_before(deadline, self.spawn_timeout, lambda: self._launch_domain(dom),
                             "starting the domain")
        guest.wait_until_running(dom, deadline, self.spawn_timeout)

    def _clean_up_failed_spawn(self, instance_id, exc):
        """Enforce spawn's failure post-condition, then raise. Always raises."""
        LOG.warning("spawn of %s failed, cleaning up: %s", instance_id, _reason(exc))
        try:
            self._delete_domain_and_files(instance_id)
        except Exception as cleanup_exc:
            raise exception.HypervisorError(
                reason="spawn of %s failed (%s) and its clean-up failed too (%s); domain %s "
                "or directory %s may be left"
                % (instance_id, _reason(exc), _reason(cleanup_exc), domain_name(instance_id),
                   self._instance_dir(instance_id))) from exc
        if isinstance(exc, exception.BuildFailed) or not isinstance(exc, Exception):
            raise exc
        raise exception.BuildFailed(instance=instance_id, reason=_reason(exc)) from exc

    # -- destroy steps -----------------------------------------------------------

    def _delete_domain_and_files(self, instance_id):
        dom, owner = self._lookup(instance_id)
        if dom is not None:
            if owner != self.host_name:
                raise exception.HypervisorError(
                    reason="domain %s belongs to %s, not %s; not touching it"
                    % (instance_id, owner or "no mininova host", self.host_name))
            guest.power_off(dom)
            guest.undefine(dom)
        try:
            shutil.rmtree(self._instance_dir(instance_id))
        except FileNotFoundError:
            pass

    # -- helpers -----------------------------------------------------------------

    def _connection(self):
        if self._host is None:
            raise exception.HypervisorError(reason="driver used before init_host()")
        return self._host.get_connection()

    def _console_log(self, instance_id):
        return os.path.join(self._instance_dir(instance_id), "console.log")

    def _instance_dir(self, instance_id):
        return os.path.join(self.instances_path, driver.validate_instance_id(instance_id))

    def _base_size(self, base_image_path):
        """The base's virtual size, asked of qemu-img once per version of the
        file (its inode, size and mtime), not once per build."""
        st = os.stat(base_image_path)
        key = (base_image_path, st.st_ino, st.st_size, st.st_mtime_ns)
        size = self._base_sizes.get(key)
        if size is None:
            size = imagebackend.base_virtual_size(base_image_path)
            self._base_sizes = {k: v for k, v in self._base_sizes.items()
                                if k[0] != base_image_path}  # older versions of it
            self._base_sizes[key] = size
        return size

    def _instance_lock(self, instance_id):
        # Weak values: a lock lives as long as someone holds or waits for it.
        with self._locks_lock:
            lock = self._locks.get(instance_id)
            if lock is None:
                lock = self._locks[instance_id] = threading.Lock()
            return lock

    def _lookup(self, instance_id):
        """(domain, owner host) for this UUID; (None, None) when there is none."""
        dom = self._host.lookup_domain(instance_id)
        if dom is None:
            return None, None
        meta = self._metadata(dom)
        return dom, (meta.host if meta else None)

    def _metadata(self, dom):
        try:
            text = self._host.domain_metadata(dom, vconfig.METADATA_NS)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT:
                raise
            return vconfig.InstanceMetadata.from_domain_xml(dom.XMLDesc(0))
        return vconfig.InstanceMetadata.from_xml(text) if text else None
