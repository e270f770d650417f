"""A VM's fixed IP, before it boots (Nova: the network API's
allocate_for_instance): the address is allocated in the database through
the conductor (computes hold no database credentials) from the network this
host's driver reads from the hypervisor, and the network's DHCP server gets
a host entry for the VM's MAC. The build's config drive then carries the
address statically (nova_compute/guest_data.py), so the guest has exactly
the address the API shows from the moment the VM is ACTIVE.

The conductor frees the address (a failed build, every delete); this host
removes the DHCP entry (a failed build, a delete, a destroyed leftover)."""
import logging

from common import exception

LOG = logging.getLogger(__name__)

# Tries to plug an address another deployment's guest on the same network
# may take between the network's read and the plug (each try reads anew).
PLUG_ATTEMPTS = 3


class FixedIps:
    def __init__(self, driver, conductor, host):
        """``conductor``: a RetryingConductor."""
        self.driver = driver
        self.conductor = conductor
        self.host = host

    def allocate_for_instance(self, ctxt, instance):
        """``instance`` (a build's dict) with ``ip_address`` and ``network``
        set to its allocated address and the network's description; unchanged
        when it has no NIC, the host no network, or the conductor is older
        than fixed IPs or says the VM is no longer spawning here (the build
        goes on and finds out when it reports; the guest uses DHCP)."""
        mac = instance.get("mac_address")
        if not mac:
            return instance
        for attempt in range(1, PLUG_ATTEMPTS + 1):
            network = self.driver.get_fixed_network(mac)
            if network is None:
                return instance
            # Read again on each attempt: an address the network gave to
            # another MAC meanwhile is ``taken`` now, and the VM moves off it.
            address = self.conductor.fixed_ip_allocate(ctxt, instance["id"], self.host,
                                                       network.to_dict())
            if address is None:
                return instance
            try:
                self.driver.plug_fixed_ip(instance["id"], mac, address)
            except exception.FixedIpInUse as e:
                if attempt == PLUG_ATTEMPTS:
                    raise
                LOG.warning("VM %s: %s; allocating another", instance["id"], e.message)
                continue
            return dict(instance, ip_address=address, network=network.to_dict())

    def unplug(self, instance_id):
        """Remove the instance's DHCP host entry here (idempotent)."""
        self.driver.unplug_fixed_ip(instance_id)

    def unplug_quietly(self, instance_id):
        """``unplug`` after a failure: an error is logged, not raised."""
        try:
            self.unplug(instance_id)
        except Exception:
            LOG.exception("VM %s: removing its DHCP host entry failed", instance_id)
