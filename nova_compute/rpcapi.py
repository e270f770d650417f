"""Client of the compute daemons: one queue per host, ``compute.<host>``."""
from common import rpc

TOPIC = "compute"
# 1.1: build_instance takes an optional ``action_id`` (sent back with the
# build's report). Sent as 1.1 only with one, so a 1.0 host takes the rest.
VERSION = "1.1"
_BASE_VERSION = "1.0"


class ComputeAPI:
    def __init__(self, transport, timeout=30):
        self.client = rpc.RPCClient(transport, rpc.Target(TOPIC, version=_BASE_VERSION),
                                    timeout=timeout)
        self._hosts = {}  # (host, version) -> prepared client: casts are per VM

    def _host_client(self, host, version=_BASE_VERSION):
        client = self._hosts.get((host, version))
        if client is None:
            client = self._hosts[(host, version)] = self.client.prepare(server=host,
                                                                        version=version)
        return client

    def build_instance(self, ctxt, host, instance, image, action_id=None):
        """``action_id``: the create's action, for the build's report."""
        if action_id is None:
            self._cast(ctxt, host, "build_instance", instance=instance, image=image)
        else:
            self._host_client(host, "1.1").cast(ctxt, "build_instance", instance=instance,
                                                image=image, action_id=action_id)

    def terminate_instance(self, ctxt, host, instance_id):
        self._cast(ctxt, host, "terminate_instance", instance_id=instance_id)

    def _cast(self, ctxt, host, method, **kwargs):
        self._host_client(host).cast(ctxt, method, **kwargs)

    def stop_instance(self, ctxt, host, instance_id):
        self._cast(ctxt, host, "stop_instance", instance_id=instance_id)

    def start_instance(self, ctxt, host, instance_id):
        self._cast(ctxt, host, "start_instance", instance_id=instance_id)

    def reboot_instance(self, ctxt, host, instance_id, hard):
        self._cast(ctxt, host, "reboot_instance", instance_id=instance_id, hard=hard)

    def pause_instance(self, ctxt, host, instance_id):
        self._cast(ctxt, host, "pause_instance", instance_id=instance_id)

    def unpause_instance(self, ctxt, host, instance_id):
        self._cast(ctxt, host, "unpause_instance", instance_id=instance_id)

    def suspend_instance(self, ctxt, host, instance_id):
        self._cast(ctxt, host, "suspend_instance", instance_id=instance_id)

    def resume_instance(self, ctxt, host, instance_id):
        self._cast(ctxt, host, "resume_instance", instance_id=instance_id)

    def get_console_output(self, ctxt, host, instance_id, lines):
        return self.client.prepare(server=host, timeout=10).call(
            ctxt, "get_console_output", instance_id=instance_id, lines=lines)

    # mininova-manage audit: calls, answered by the host itself.
    def audit_report(self, ctxt, host, timeout=None):
        """{"host", "domains": [{id, power_state}], "dirs": [ids], "images": [ids]}."""
        return self.client.prepare(server=host, timeout=timeout).call(ctxt, "audit_report")

    def audit_fix(self, ctxt, host, instance_ids, timeout=None):
        """Destroy these orphans on ``host``: {id: "destroyed"|"skipped:..."|"failed:..."}."""
        return self.client.prepare(server=host, timeout=timeout).call(
            ctxt, "audit_fix", instance_ids=list(instance_ids))
