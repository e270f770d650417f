"""Rebuilding a VM of this host from an image (Nova's rebuild): a power
task (PowerTasks.run: under the VM's lock, only while it is this host's and
``rebuilding``, reported with instance_task_done/failed) whose work is the
driver's rebuild on a fresh overlay of the image.

The VM keeps its id, MAC, fixed IP and DHCP host entry; its config drive is
written again from the row (metadata, keypair, user_data, the fixed IP and
its network). A stopped VM is rebuilt and left stopped, as in Nova."""
import functools
import logging

from common import states
from nova_compute import builder

LOG = logging.getLogger(__name__)


class Rebuilder:
    def __init__(self, driver, conductor, image_cache, power_tasks, conf):
        """``conductor``: a RetryingConductor; ``power_tasks``: the PowerTasks
        that run the task (its lock, checks and reports)."""
        self.driver = driver
        self.conductor = conductor
        self.image_cache = image_cache
        self.power_tasks = power_tasks
        self.conf = conf

    def rebuild(self, ctxt, instance_id, image):
        self.power_tasks.run(ctxt, instance_id, states.REBUILDING,
                             functools.partial(self._rebuild, ctxt, instance_id, image))

    def _rebuild(self, ctxt, instance_id, image, cancel):
        """Under the VM's lock, the VM ``rebuilding`` on this host."""
        current = self.conductor.instance_get(ctxt, instance_id)
        was_stopped = current["vm_state"] == states.STOPPED
        instance = self._with_network(current)
        base = self.image_cache.fetch(image["id"], self._image_url(image["id"]),
                                      image["checksum"])
        self.driver.rebuild(builder.instance_spec(instance, image["id"]), base)
        if was_stopped:
            self.driver.power_off(instance_id, self.conf.compute.shutdown_timeout, cancel)
        LOG.info("VM %s rebuilt from image %s", instance_id, image["id"])

    def _with_network(self, instance):
        """The VM's fixed IP's network, for the config drive (its address and
        DHCP entry stay as allocated at the build)."""
        mac = instance.get("mac_address")
        if not instance.get("ip_address") or not mac:
            return instance
        network = self.driver.get_fixed_network(mac)
        return dict(instance, network=network.to_dict()) if network is not None else instance

    def _image_url(self, image_id):
        return "%s/v1/images/%s/file" % (self.conf.compute.image_api_url.rstrip("/"), image_id)
