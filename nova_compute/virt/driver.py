"""The contract between the compute manager and a hypervisor driver.

A driver owns the domains whose mininova metadata names its host, and nothing
else: it never lists, changes or deletes a domain another host (or a human)
defined. Every method is safe to call from several threads; calls for the same
instance are serialised by the driver.
"""
import abc
import dataclasses
import re
import uuid

from common import exception
from nova_compute.virt.configdrive import ConfigDrive

_MAC = re.compile(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")


def validate_instance_id(instance_id):
    """Return ``instance_id`` if it is a canonical UUID string, else raise Invalid.

    The id becomes a directory name that destroy() removes, so nothing but a
    canonical UUID (no '/', no '..') is accepted.
    """
    try:
        canonical = str(uuid.UUID(instance_id))
    except (TypeError, ValueError, AttributeError):
        canonical = None
    if canonical is None or canonical != instance_id:
        raise exception.Invalid(reason="instance id %r is not a canonical UUID" % (instance_id,))
    return instance_id


@dataclasses.dataclass(frozen=True)
class InstanceSpec:
    """What a driver needs to build one VM; the manager makes it from the DB row."""

    id: str           # canonical lowercase UUID; also the libvirt domain UUID
    name: str         # the user's VM name: free text, only ever stored as XML text
    vcpus: int
    memory_mb: int
    root_gb: int      # 0 = the base image's virtual size
    image_id: str
    project_id: str
    mac_address: str | None = None   # the NIC's MAC; None: no NIC
    # What the guest learns at boot (host name, keys, metadata, user_data,
    # network), as a config drive; None: the VM gets no config drive.
    config_drive: ConfigDrive | None = None

    def __post_init__(self):
        validate_instance_id(self.id)
        for field, low in (("vcpus", 1), ("memory_mb", 1), ("root_gb", 0)):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise exception.Invalid(reason="%s must be an integer >= %d, not %r"
                                        % (field, low, value))
        if not isinstance(self.name, str):
            raise exception.Invalid(reason="name must be a string")
        if self.mac_address is not None and not _MAC.match(self.mac_address):
            raise exception.Invalid(reason="mac_address %r is not a MAC" % (self.mac_address,))
        if self.config_drive is not None and not isinstance(self.config_drive, ConfigDrive):
            raise exception.Invalid(reason="config_drive must be a ConfigDrive")


class ComputeDriver(abc.ABC):
    """A hypervisor as the compute manager sees it.

    Errors: hypervisor trouble surfaces as ``HypervisorError``, a failed build
    as ``BuildFailed``, a failed move as ``MigrationError``, an unknown or
    foreign instance as ``InstanceNotFound``; no hypervisor library exception
    ever escapes a driver. Every operation is abstract here (and raises
    NotImplementedError only here): a driver implements all of them.
    """

    @abc.abstractmethod
    def init_host(self, host):
        """Connect to the hypervisor and remember ``host``, the name written into
        (and later required from) the metadata of every domain this driver owns.

        Post: the driver is usable; raises HypervisorError if the hypervisor
        cannot be reached. Must be called once before any other method.
        """
        raise NotImplementedError

    @abc.abstractmethod
    def get_host_resources(self):
        """Totals of the hypervisor host, not what is free.

        Returns ``dict(vcpus, memory_mb, local_gb, hypervisor_type,
        hypervisor_version, cpu_info)``: vCPUs and memory as the hypervisor
        reports them, ``local_gb`` the size of the filesystem holding
        instances_path. Reservations and allocation ratios are the caller's job.
        """
        raise NotImplementedError

    @abc.abstractmethod
    def spawn(self, instance, base_image_path, step=None):
        """Create and boot ``instance`` (an InstanceSpec) on a copy-on-write
        overlay of the cached base image at ``base_image_path``.

        ``step(event)``, if given, returns a context manager the driver wraps
        around each stage ("disk cloned", "domain defined", "domain started")
        so the caller can time them for the VM's action timeline.

        Post on success: the domain exists, is RUNNING and carries this host's
        metadata; with ``instance.config_drive`` set, the guest also has a
        read-only CD-ROM holding its config drive (OpenStack's format, see
        virt/configdrive.py), which goes with the instance on destroy().
        Post on failure: nothing of the instance is left (no domain,
        no instance directory) and BuildFailed is raised with the reason; if
        even the clean-up failed, HypervisorError says what may be left.
        Idempotent: a domain of this instance that already runs is a success
        without any change; one that is defined but not running is started.
        """
        raise NotImplementedError

    @abc.abstractmethod
    def destroy(self, instance_id):
        """Power off and delete the instance.

        Post: no domain (not even its managed-save image or snapshot metadata),
        no instance directory and no disk set aside for a revert. Idempotent: a
        missing domain or directory is not an error. A domain with this id
        owned by another host is not touched: HypervisorError is raised
        instead. Also what removes a stale copy from a host a VM was evacuated
        from (the copy still carries that host's metadata).
        """
        raise NotImplementedError

    @abc.abstractmethod
    def get_info(self, instance_id):
        """Return ``dict(power_state=...)`` (one of ``common.states.POWER_STATES``,
        plus extra keys).

        Raises InstanceNotFound when this host owns no domain with that id.
        """
        raise NotImplementedError

    def instance_exists(self, instance_id):
        """True when this host owns a domain with that id (Nova's name)."""
        try:
            self.get_info(instance_id)
            return True
        except exception.InstanceNotFound:
            return False

    @abc.abstractmethod
    def list_instances(self):
        """Return ``[dict(id, name, power_state)]`` for the domains this host
        owns (``name`` is the user's VM name from the metadata). Domains without
        mininova metadata or of another host are left out.
        """
        raise NotImplementedError

    # -- power operations: each acts on a domain this host owns (else
    # InstanceNotFound), is idempotent, and raises HypervisorError if the
    # promised state was not reached.

    @abc.abstractmethod
    def power_off(self, instance_id, timeout=0, cancel=None):
        """Post: the domain is shut off (still defined). With ``timeout`` > 0
        the guest is first asked to power off (ACPI) and given that long; then
        it is forced, like Nova's clean shutdown. ``cancel`` (an Event) cuts
        the wait short."""
        raise NotImplementedError

    @abc.abstractmethod
    def power_on(self, instance_id):
        """Post: the domain runs (from its managed-save image if it has one)."""
        raise NotImplementedError

    @abc.abstractmethod
    def reboot(self, instance_id, hard=False, timeout=0, cancel=None):
        """Post: the domain runs again after a restart. Soft: ACPI shutdown
        within ``timeout`` then start, falling back to hard; hard: forced
        power-off then start."""
        raise NotImplementedError

    @abc.abstractmethod
    def pause(self, instance_id):
        """Post: the domain is paused (vCPUs stopped, memory kept in RAM)."""
        raise NotImplementedError

    @abc.abstractmethod
    def unpause(self, instance_id):
        """Post: a paused domain runs again."""
        raise NotImplementedError

    @abc.abstractmethod
    def suspend(self, instance_id):
        """Post: the guest's memory is saved to disk and the domain is shut
        off; get_info() reports it 'suspended'."""
        raise NotImplementedError

    @abc.abstractmethod
    def resume(self, instance_id):
        """Post: a suspended domain runs again from where it was saved."""
        raise NotImplementedError

    @abc.abstractmethod
    def get_console_output(self, instance_id, lines):
        """The last ``lines`` lines of the instance's serial console log, as
        text. The log survives restarts of the domain (it is appended to) and
        goes with destroy(). Raises InstanceNotFound for a domain not ours."""
        raise NotImplementedError

    @abc.abstractmethod
    def get_addresses(self, macs):
        """``{mac: ip}`` for those of ``macs`` that hold a DHCP lease now.
        One look at the hypervisor's network, however many MACs are asked."""
        raise NotImplementedError

    # -- the fixed IP's network (Nova: the network API's part of a build) --------

    @abc.abstractmethod
    def get_fixed_network(self, mac=None):
        """The network VMs' NICs join, as a ``common.fixed_networks.FixedNetwork``
        (subnet, gateway, DNS, and the range fixed IPs come from: the network's
        DHCP range), read from the hypervisor; its ``taken``: the addresses
        the network gives to MACs other than ``mac`` now (DHCP host entries
        and leases). None when VMs get no NIC. HypervisorError when the
        network cannot be read."""
        raise NotImplementedError

    @abc.abstractmethod
    def plug_fixed_ip(self, instance_id, mac, address):
        """Post: the network's DHCP server hands ``address`` to ``mac`` (one
        host entry, the instance's; an older one of ``mac`` for another
        address is replaced). Idempotent. FixedIpInUse, changing nothing,
        when the network gives ``address`` to another MAC (e.g. another
        deployment's guest on the same network took it since it was read)."""
        raise NotImplementedError

    @abc.abstractmethod
    def unplug_fixed_ip(self, instance_id):
        """Post: the network has no DHCP host entry of the instance.
        Idempotent (none is no error)."""
        raise NotImplementedError

    @abc.abstractmethod
    def cleanup_host(self):
        """Close the hypervisor connections. Safe to call more than once."""
        raise NotImplementedError

    # -- moves: snapshot, rebuild, resize/cold migration, live migration,
    # evacuation. Data handed from one host to another (disk_info,
    # migrate_data) is a JSON-able dict: it travels through the conductor.

    @abc.abstractmethod
    def get_instance_disk_info(self, instance_id):
        """``dict(path, format, virtual_size, actual_size, image_id)`` of the
        instance's root disk (sizes in bytes; ``image_id`` the base it was
        made from). Raises InstanceNotFound for a domain not ours."""
        raise NotImplementedError

    @abc.abstractmethod
    def snapshot(self, instance_id, target_path):
        """Write the instance's root disk as one standalone qcow2 image (no
        backing file) to ``target_path``, for upload as a new image.

        Post: ``target_path`` holds the disk as it was at one moment, and the
        guest is in the power state it was in before (a running guest may be
        saved to disk and restored meanwhile, so that its disk is consistent).
        Returns ``dict(path, format, size, virtual_size)``. On failure nothing
        is left at ``target_path``."""
        raise NotImplementedError

    @abc.abstractmethod
    def rebuild(self, instance, base_image_path, step=None):
        """Rebuild ``instance`` (an InstanceSpec, maybe of another image) from
        a fresh overlay of ``base_image_path``; ``step`` as in spawn.

        Post on success: the domain runs with this host's metadata, its old
        disk is gone. With no domain here (the destination of an evacuation)
        it is a spawn. Post on failure: as spawn's (nothing left)."""
        raise NotImplementedError

    @abc.abstractmethod
    def migrate_disk_and_power_off(self, instance_id, dest_host, timeout=0, cancel=None):
        """Source of a resize or cold migration to ``dest_host`` (which may
        be this host).

        Post: the domain is shut off (as power_off with ``timeout`` and
        ``cancel``), still defined and owned here, and its disk is set aside
        here, unchanged until confirm_migration or finish_revert_migration,
        for the destination to fetch and for a revert. Returns ``disk_info``
        for finish_migration: ``source_host``, ``instance_id``,
        ``virtual_size``, ``actual_size`` and what another host needs to
        fetch the disk from this one without sharing its filesystem (the
        libvirt driver: ``source_uri``, the URI of this host's libvirtd, with
        the set-aside ``path`` and ``file_size``). Idempotent."""
        raise NotImplementedError

    @abc.abstractmethod
    def finish_migration(self, instance, disk_info, base_image_path, power_on=True):
        """Destination of a resize or cold migration. ``instance``: the
        InstanceSpec with the new flavor; ``disk_info``: what the source's
        migrate_disk_and_power_off returned; ``base_image_path``: this host's
        cached copy of ``instance.image_id``.

        Post on success: the domain is defined here with this host's metadata
        and the new flavor, on a disk of its own here with the source's data
        (fetched from the source host, or copied when it is this host; never
        read by path from another host), backed by ``base_image_path`` and
        grown to ``instance.root_gb`` (never shrunk: Invalid); running if
        ``power_on``, else shut off.
        Post on failure (the source unreachable, the copy cut or corrupt...):
        nothing of the instance is left here (no partial disk), the source's
        set-aside disk is untouched for the revert, MigrationError says why.
        Idempotent."""
        raise NotImplementedError

    @abc.abstractmethod
    def confirm_migration(self, instance_id):
        """Source, once a resize or cold migration is confirmed.

        Post: the disk set aside for a revert is gone, and so is this host's
        domain unless the VM lives on here (a resize on the same host).
        Idempotent."""
        raise NotImplementedError

    @abc.abstractmethod
    def finish_revert_migration(self, instance, power_on=True):
        """Source, when a resize or cold migration is reverted, after the
        destination destroyed its copy (not when both are this host: this
        removes the resized copy itself).

        Post: the domain is defined here with the flavor of ``instance`` (the
        old one) on the disk set aside, running if ``power_on``. Idempotent;
        MigrationError when there is nothing to revert to."""
        raise NotImplementedError

    @abc.abstractmethod
    def pre_live_migration(self, instance, base_image_path, migrate_data):
        """Destination, before a live migration of ``instance`` (an
        InstanceSpec) to this host; ``base_image_path``: this host's cached
        copy of its image.

        Post: this host is ready to receive the domain (its disk waits here).
        Returns ``migrate_data`` with what the source's live_migration needs
        added. MigrationError, with nothing left here, if it cannot be."""
        raise NotImplementedError

    @abc.abstractmethod
    def live_migration(self, instance_id, dest_host, migrate_data, progress=None, abort=None):
        """Source: move the running guest to ``dest_host`` (memory and disk)
        while it runs. ``migrate_data``: pre_live_migration's answer;
        ``progress(dict(processed_bytes, remaining_bytes, total_bytes))`` is
        called as the copy goes on; setting ``abort`` (an Event) stops it.

        Post on success: the guest runs on ``dest_host`` and nothing of it is
        left here (no domain, no disk). Post on failure or abort: the guest
        runs here as before, MigrationError (MigrationAborted) is raised, and
        rollback_live_migration_at_destination cleans the destination."""
        raise NotImplementedError

    def settle_live_migration(self, instance_id):
        """Source, at start-up, for a live migration that a restart of this
        service cut short (the hypervisor may still be copying): stop the
        copy if it can still be stopped, wait for its end. True when the
        guest is (still) here, False when it went. Default: no copy outlives
        this process (the fakes)."""
        return self.instance_exists(instance_id)

    @abc.abstractmethod
    def post_live_migration_at_destination(self, instance_id, paused=False):
        """Destination, after live_migration succeeded.

        Post: the domain is defined persistently here, with this host's
        metadata, and runs (is paused if ``paused``: a guest that was
        paused on the source). Idempotent."""
        raise NotImplementedError

    @abc.abstractmethod
    def rollback_live_migration_at_destination(self, instance_id):
        """Destination, after live_migration failed or was aborted.

        Post: nothing of the instance is left here, as after destroy."""
        raise NotImplementedError
