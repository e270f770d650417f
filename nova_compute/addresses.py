"""Learning a VM's IP from the DHCP lease its guest takes after boot.

One look at the network's leases serves every VM still waiting, so the cost
does not grow with the number of VMs; nothing is polled once none waits."""
import logging
import threading
import time

LOG = logging.getLogger(__name__)

GIVE_UP_AFTER = 600.0  # a guest without DHCP client must not be polled forever


class AddressWatcher:
    def __init__(self, driver, report):
        """``report(ctxt, instance_id, ip)`` records a learned address."""
        self.driver = driver
        self.report = report
        self._waiting = {}  # instance id -> (mac, since)
        self._lock = threading.Lock()

    def expect(self, instance_id, mac):
        with self._lock:
            self._waiting[instance_id] = (mac.lower(), time.monotonic())

    def forget(self, instance_id):
        with self._lock:
            self._waiting.pop(instance_id, None)

    def waiting(self):
        with self._lock:
            return dict(self._waiting)

    def poll(self, ctxt):
        waiting = self.waiting()
        if not waiting:
            return
        leases = self.driver.get_addresses([mac for mac, _ in waiting.values()])
        now = time.monotonic()
        for instance_id, (mac, since) in waiting.items():
            ip = leases.get(mac)
            if ip:
                LOG.info("VM %s has IP %s (MAC %s) after %.1f s", instance_id, ip, mac,
                         now - since)
                self.report(ctxt, instance_id, ip)
                self.forget(instance_id)
            elif now - since > GIVE_UP_AFTER:
                LOG.warning("VM %s: no DHCP lease for %s after %.0f s; no longer looking",
                            instance_id, mac, now - since)
                self.forget(instance_id)
