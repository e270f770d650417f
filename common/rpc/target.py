"""Where a message goes: a topic, optionally one server of it, and an API version."""
import dataclasses

from common.rpc import protocol


@dataclasses.dataclass(frozen=True)
class Target:
    """Address of an RPC endpoint.

    ``topic`` names a service (``scheduler``, ``conductor``, ``compute``);
    ``server`` picks one host of it (``compute.node1``). The queue name is the
    routing key too, so a person can read the topology in the management UI.
    ``version`` is "major.minor": a client stamps it on its messages, a server
    accepts same major and a minor up to its own.
    """

    topic: str
    server: str | None = None
    version: str = "1.0"

    def __post_init__(self):
        if not isinstance(self.topic, str) or not self.topic or self.topic.strip() != self.topic:
            raise ValueError("Target topic must be a non-empty string without spaces, "
                             "got %r" % (self.topic,))
        if self.server is not None and (not isinstance(self.server, str) or not self.server):
            raise ValueError("Target server must be a non-empty string or None, "
                             "got %r" % (self.server,))
        protocol.parse_version(self.version)  # ValueError if not "X.Y"

    @property
    def queue(self):
        """Queue name, also the routing key on the ``mininova`` exchange."""
        return self.topic if self.server is None else f"{self.topic}.{self.server}"

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)
