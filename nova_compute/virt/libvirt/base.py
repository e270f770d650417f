"""What every operation of the libvirt driver stands on.

LibvirtBase holds the connection, finds a domain and its owner (a domain is
ours when its <mininova:instance> metadata names our host), serializes the
calls on one instance (a lock and a borrowed connection), defines and starts
the domain of an InstanceSpec and deletes one with its files. LibvirtDriver
(driver.py) implements the driver contract on these. Steps that touch QEMU or
disk images are small methods (_create_overlay, _create_config_drive,
_define_domain, _launch_domain, _disk_sizes, _convert_disk, _adopt_disk,
_fetch_disk, _migrate_live, _clean_shutdown) so the fake driver and its
failure-injecting subclasses can replace one each.
"""
import contextlib
import datetime
import logging
import os
import shutil
import time

import libvirt

from common import exception
from common.locks import KeyedLocks
from nova_compute.virt import configdrive, driver
from nova_compute.virt.libvirt import config as vconfig
from nova_compute.virt.libvirt import disk_transfer
from nova_compute.virt.libvirt import guest
from nova_compute.virt.libvirt import host as vhost
from nova_compute.virt.libvirt import imagebackend
from nova_compute.virt.libvirt import live_migration
from nova_compute.virt.libvirt import power_ops
from nova_compute.virt.libvirt.instance_files import InstanceFiles

LOG = logging.getLogger(__name__)

DOMAIN_NAME_PREFIX = "mininova-"


def domain_name(instance_id):
    return DOMAIN_NAME_PREFIX + instance_id


def no_step(_event):
    return contextlib.nullcontext()


def reason(exc):
    if isinstance(exc, libvirt.libvirtError):
        return "libvirt: %s" % exc
    return exception.describe(exc)


class LibvirtBase:
    def __init__(self, conf, lifecycle_callback=None):
        self.uri = self._connection_uri(conf)
        self.files = InstanceFiles(conf.compute.instances_path)
        self.instances_path = self.files.instances_path
        self.spawn_timeout = conf.compute.spawn_timeout
        self.network_name = conf.compute.network_name
        self._configured_virt_type = conf.libvirt.virt_type
        self._inbound_uri = conf.libvirt.live_migration_inbound_uri
        self._pool_size = self._connection_pool_size(conf)
        self._lifecycle_callback = lifecycle_callback
        self._host = None
        self.host_name = None
        self.virt_type = None
        self._disk_cache = "none"
        self._instance_locks = KeyedLocks()
        self._base_sizes = {}  # (path, inode, size, mtime_ns) -> virtual size

    # -- overridable choices and steps ------------------------------------------

    def _connection_uri(self, conf):
        return conf.libvirt.connection_uri

    def _connection_pool_size(self, conf):
        return conf.libvirt.connection_pool_size

    def _detect_virt_type(self):
        return vhost.detect_virt_type(self._configured_virt_type)

    def _create_overlay(self, instance, base_image_path, overlay_path):
        size = imagebackend.overlay_size(instance.root_gb, self._base_size(base_image_path))
        imagebackend.create_overlay(base_image_path, overlay_path, size)

    def _create_config_drive(self, instance, path):
        configdrive.make_config_drive(instance, path)

    def _guest_devices(self, instance, disk_path):
        devices = [vconfig.DiskConfig(disk_path, cache=self._disk_cache),
                   vconfig.SerialConsoleConfig(self.files.console_log(instance.id))]
        if instance.mac_address and self.network_name:
            devices.append(vconfig.InterfaceConfig(instance.mac_address, self.network_name))
        if instance.config_drive is not None:
            devices.append(vconfig.CdromConfig(self.files.config_drive(instance.id),
                                               cache=self._disk_cache))
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

    def _disk_sizes(self, path):
        """(virtual, actual) size in bytes of the qcow2 at ``path``."""
        info = imagebackend.image_info(path)
        return int(info["virtual-size"]), int(info.get("actual-size", 0))

    def _convert_disk(self, path, target_path):
        imagebackend.convert_to_standalone(path, target_path)

    def _adopt_disk(self, disk_info, disk_path, base_image_path, size):
        """Make ``disk_path`` a copy of the overlay the source set aside
        (``disk_info``), on this host's copy of its base (the same image:
        the same content), checked, grown to ``size`` bytes. Post on
        failure: no ``disk_path`` and no part of it."""
        part = disk_path + ".part"
        try:
            self._fetch_disk(disk_info, part)
            imagebackend.rebase_unsafe(part, base_image_path)
            imagebackend.check(part, disk_info["virtual_size"])
            imagebackend.grow(part, size)
            os.replace(part, disk_path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(part)
            raise

    def _fetch_disk(self, disk_info, target):
        """Write the source's set-aside disk to ``target``: a local copy on a
        resize on this host, else downloaded from the source's libvirtd
        (never read by path: hosts share no filesystem)."""
        if disk_info["source_host"] == self.host_name:
            shutil.copyfile(disk_info["path"], target)
            return
        if not disk_info.get("source_uri"):
            raise exception.MigrationError(instance=disk_info["instance_id"], reason=(
                "%s named no libvirt URI to fetch the disk from" % disk_info["source_host"]))
        directory, name = os.path.split(disk_info["path"])
        disk_transfer.download(disk_info["source_uri"], disk_info["instance_id"], directory,
                               name, target, disk_info["file_size"])

    def _migrate_live(self, dom, dest_uri, params, progress, abort):
        live_migration.run(dom, dest_uri, params, progress=progress, abort=abort)

    def _clean_shutdown(self, dom, timeout, cancel):
        return power_ops.clean_shutdown(dom, timeout, cancel)

    # -- spawn steps -------------------------------------------------------------

    def _build(self, instance, base_image_path, step):
        if not os.path.isabs(base_image_path):
            raise exception.Invalid(reason="base image path must be absolute, not %r"
                                    % base_image_path)
        if not os.path.isfile(base_image_path):
            raise exception.ImageUnavailable(image=instance.image_id,
                                             reason="no base file %s" % base_image_path)
        # No domain yet, so a directory here is from a build that died before
        # define: its overlay never booted and may be half written.
        self.files.fresh_dir(instance.id)
        with step("disk cloned"):
            self._create_overlay(instance, base_image_path, self.files.disk(instance.id))
        if instance.config_drive is not None:
            with step("config drive written"):
                self._write_config_drive(instance)
        with step("domain defined"):
            return self._define(instance)

    def _write_config_drive(self, instance):
        self._create_config_drive(instance, self.files.config_drive(instance.id))

    def _define(self, instance):
        """Define (or redefine) the domain of ``instance`` on its disk here;
        with its config drive, written here unless its directory has it (a
        move's destination has none yet; a revert takes its own back)."""
        if (instance.config_drive is not None
                and not os.path.isfile(self.files.config_drive(instance.id))):
            self._write_config_drive(instance)
        created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        metadata = vconfig.InstanceMetadata(
            id=instance.id, name=instance.name, host=self.host_name,
            project_id=instance.project_id, vcpus=instance.vcpus,
            memory_mb=instance.memory_mb, root_gb=instance.root_gb,
            image_id=instance.image_id, created=created)
        guest_config = vconfig.GuestConfig(
            virt_type=self.virt_type, uuid=instance.id, name=domain_name(instance.id),
            memory_mb=instance.memory_mb, vcpus=instance.vcpus, metadata=metadata,
            devices=self._guest_devices(instance, self.files.disk(instance.id)))
        return self._define_domain(guest_config.to_xml())

    def _ensure_running(self, dom):
        state = dom.state()[0]
        if state in guest.RUNNING_STATES:
            return
        deadline = time.monotonic() + self.spawn_timeout
        if state == libvirt.VIR_DOMAIN_PAUSED:
            dom.resume()
        else:
            guest.run_before(
                deadline, self.spawn_timeout,
                lambda: guest.start_retrying(lambda: self._launch_domain(dom), deadline,
                                             "starting %s" % dom.name()),
                "starting the domain")
        guest.wait_until_running(dom, deadline, self.spawn_timeout)

    def _clean_up_failed_spawn(self, instance_id, exc):
        """Enforce spawn's failure post-condition, then raise. Always raises."""
        LOG.warning("spawn of %s failed, cleaning up: %s", instance_id, reason(exc))
        try:
            self._delete_domain_and_files(instance_id)
        except Exception as cleanup_exc:
            raise exception.HypervisorError(
                reason="spawn of %s failed (%s) and its clean-up failed too (%s); domain %s "
                "or directory %s may be left"
                % (instance_id, reason(exc), reason(cleanup_exc), domain_name(instance_id),
                   self.files.dir(instance_id))) from exc
        if isinstance(exc, exception.BuildFailed) or not isinstance(exc, Exception):
            raise exc
        raise exception.BuildFailed(instance=instance_id, reason=reason(exc)) from exc

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
        self.files.remove(instance_id)

    # -- helpers -----------------------------------------------------------------

    def _peer_uri(self):
        """How other hosts' libvirtd (and computes) reach this host's."""
        return self._inbound_uri or "qemu+tcp://%s/system" % self.host_name

    def _connection(self):
        if self._host is None:
            raise exception.HypervisorError(reason="driver used before init_host()")
        return self._host.get_connection()

    @contextlib.contextmanager
    def _instance(self, instance_id, what=None):
        """For a sequence of calls on one instance: a connection of this
        thread's own and the instance's lock. With ``what``, a libvirtError
        in the block becomes HypervisorError naming it."""
        self._connection()
        with self._host.borrowed_connection(), self._instance_locks.lock(instance_id):
            if what is None:
                yield
                return
            try:
                yield
            except libvirt.libvirtError as exc:
                raise exception.HypervisorError(
                    reason="%s of %s: %s" % (what, instance_id, exc)) from exc

    @contextlib.contextmanager
    def _owned(self, instance_id, what):
        """``_instance(instance_id, what)``, yielding our domain (else
        InstanceNotFound)."""
        with self._instance(driver.validate_instance_id(instance_id), what):
            dom, owner = self._lookup(instance_id)
            if dom is None or owner != self.host_name:
                raise exception.InstanceNotFound(instance=instance_id)
            yield dom

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
