"""The one exception hierarchy of mininova.

Every error a user can cause or see is a ``MininovaException`` subclass with an
HTTP ``code``; the API maps them to responses in one error handler, and the RPC
layer carries them across the wire by class name (see ``common.rpc``).

Every class is defined here and nowhere else: a process that receives an
error by name then finds its class whatever modules it imported, and a
remote error cannot name a class outside this module.
"""

_REGISTRY = {}  # class name -> class, for the classes of this module only


class MininovaException(Exception):
    """Base class. ``msg_fmt`` is formatted with the keyword arguments."""

    code = 500
    msg_fmt = "An unknown error occurred."

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__module__ == __name__:
            if cls.__name__ in _REGISTRY:
                raise TypeError("two exception classes named %s" % cls.__name__)
            _REGISTRY[cls.__name__] = cls

    def __init__(self, message=None, **kwargs):
        self.kwargs = kwargs
        if message is None:
            try:
                message = self.msg_fmt % kwargs
            except (KeyError, TypeError):
                message = self.msg_fmt
        self.message = str(message)
        super().__init__(self.message)


_REGISTRY[MininovaException.__name__] = MininovaException


class Invalid(MininovaException):
    code = 400
    msg_fmt = "Invalid request: %(reason)s"


class ValidationError(Invalid):
    msg_fmt = "Invalid field '%(field)s': %(reason)s"


class InvalidAPIVersionString(Invalid):
    msg_fmt = ("API Version String %(version)s is of invalid format. Must be of format "
               "MajorNum.MinorNum.")


class InvalidKeypair(Invalid):
    msg_fmt = "Keypair data is invalid: %(reason)s"


class InvalidImageData(Invalid):
    msg_fmt = "Image data is not in %(disk_format)s format: %(reason)s"


class Unauthorized(MininovaException):
    code = 401
    msg_fmt = "Authentication required: %(reason)s"


class MarkerNotFound(Invalid):
    msg_fmt = "Invalid request: marker %(marker)s not found."


class Forbidden(MininovaException):
    code = 403
    msg_fmt = "Forbidden."


class QuotaExceeded(Forbidden):
    msg_fmt = ("Quota exceeded for %(resource)s: requested %(requested)d, %(used)d of "
               "%(limit)d used.")


class MetadataLimitExceeded(QuotaExceeded):
    msg_fmt = ("Quota exceeded for metadata_items: %(requested)d metadata items, at most "
               "%(limit)d allowed.")


class ReadOnlyRole(Forbidden):
    msg_fmt = "The reader role may only read (GET); %(method)s needs member or admin."


class NotFound(MininovaException):
    code = 404
    msg_fmt = "Resource could not be found."


class InstanceNotFound(NotFound):
    msg_fmt = "VM %(instance)s could not be found."


class NetworkNotFound(NotFound):
    msg_fmt = "The server is not a member of network %(network)s."


class ImageNotFound(NotFound):
    msg_fmt = "Image %(image)s could not be found."


class FlavorNotFound(NotFound):
    msg_fmt = "Flavor %(flavor)s could not be found."


class FlavorAccessNotFound(NotFound):
    msg_fmt = "Flavor access not found for flavor %(flavor)s and project %(project)s."


class FlavorExtraSpecNotFound(NotFound):
    msg_fmt = "Flavor %(flavor)s has no extra spec with key %(key)s."


class KeypairNotFound(NotFound):
    msg_fmt = "Keypair %(name)s not found for user %(user)s."


class MetadataItemNotFound(NotFound):
    msg_fmt = "VM %(instance)s has no metadata item with key %(key)s."


class HostNotFound(NotFound):
    msg_fmt = "Compute host %(host)s could not be found."


class ServiceNotFound(NotFound):
    msg_fmt = "Service %(service)s could not be found."


class MigrationNotFound(NotFound):
    msg_fmt = "Migration %(migration)s could not be found."


class ServerGroupNotFound(NotFound):
    msg_fmt = "Server group %(group)s could not be found."


class InstanceActionNotFound(NotFound):
    msg_fmt = "Action %(request_id)s of VM %(instance)s could not be found."


class ProjectNotFound(NotFound):
    msg_fmt = "Project %(project)s could not be found."


class UserNotFound(NotFound):
    msg_fmt = "User %(user)s could not be found."


class RoleAssignmentNotFound(NotFound):
    msg_fmt = "User %(user)s has no role %(role)s in project %(project)s."


class TokenNotFound(NotFound):
    msg_fmt = "The token could not be found (invalid, expired or revoked)."


class Conflict(MininovaException):
    code = 409
    msg_fmt = "%(reason)s"


class ComputeServiceInUse(Conflict):
    """An evacuation of a VM whose host's compute service is still up."""
    msg_fmt = ("The compute service of host %(host)s is still up (its last heartbeat "
               "%(age)s ago, within service_down_time %(down_after)d s): only a VM of a "
               "down host can be evacuated.")


class DuplicateName(Conflict):
    msg_fmt = "A %(kind)s named '%(name)s' already exists."


class IdempotencyKeyReused(Conflict):
    """An X-Idempotency-Key sent again within its window with another request."""
    msg_fmt = ("X-Idempotency-Key '%(key)s' was used by this project within the last "
               "%(seconds)d s for a create with another body (VM %(vm)s); use a new key "
               "for a new request.")


class IdempotentVMGone(Conflict):
    """The VM an X-Idempotency-Key created is deleted: nothing to replay."""
    msg_fmt = ("VM %(vm)s, which the create with X-Idempotency-Key '%(key)s' made, has "
               "been deleted since; use a new key to create another.")


class InvalidGlobalAPIVersion(MininovaException):
    """A microversion outside what the compute API serves (Nova's 406)."""

    code = 406
    msg_fmt = ("Version %(req_ver)s is not supported by the API. Minimum is %(min_ver)s and "
               "maximum is %(max_ver)s.")


class FlavorExists(Conflict):
    msg_fmt = "Flavor with %(field)s %(value)s already exists."


class FlavorAccessExists(Conflict):
    msg_fmt = "Flavor %(flavor)s is already shared with project %(project)s."


class KeypairExists(Conflict):
    msg_fmt = "Key pair '%(name)s' already exists."


class InstanceLocked(Conflict):
    msg_fmt = "VM %(instance)s is locked; only an admin may %(action)s it now."


class ImageStatusConflict(Conflict):
    msg_fmt = "Image %(image)s is %(status)s; this needs it %(needed)s."


class PayloadTooLarge(MininovaException):
    code = 413
    msg_fmt = "Request body too large (limit %(limit)d bytes)."


class UnsupportedMediaType(MininovaException):
    code = 415
    msg_fmt = "Unsupported content type '%(content_type)s'; use application/json."


class ServiceUnavailable(MininovaException):
    code = 503
    msg_fmt = "Service unavailable: %(reason)s"


class MigrationRefused(MininovaException):
    """mininova-manage rabbit migrate-to-quorum would lose or race something."""

    code = 409
    msg_fmt = "Migration refused: %(reason)s"


class DatabaseUnavailable(ServiceUnavailable):
    """The database connection was lost; ``phase`` (common/db/retry.py: connect,
    statement or commit) says whether the transaction may have been applied."""

    def __init__(self, message=None, phase="connect", **kwargs):
        self.phase = phase
        super().__init__(message, **kwargs)


class BrokerAccessRefused(ServiceUnavailable):
    """RabbitMQ refused this daemon's broker account something (ACCESS_REFUSED):
    a message its role may not publish, or a queue it may not use."""

    msg_fmt = "The message broker refused %(what)s: %(reason)s"


class MessagingTimeout(ServiceUnavailable):
    msg_fmt = "No reply to RPC '%(method)s' on '%(topic)s' within %(timeout)s s."


class RemoteError(MininovaException):
    """A remote handler raised something that is not a MininovaException."""

    msg_fmt = "Remote error %(exc_type)s: %(value)s"


# A request an RPC server cannot dispatch: it is dead-lettered, never retried,
# and a waiting caller gets this error back.
class MalformedMessage(MininovaException):
    msg_fmt = "Malformed RPC message: %(reason)s"


class UnsupportedVersion(MalformedMessage):
    msg_fmt = ("Message version %(version)s of %(method)s not supported by %(queue)s at "
               "version %(server_version)s (same major, minor up to its own; cap newer "
               "senders with [upgrade_levels])")


class NoSuchMethod(MalformedMessage):
    msg_fmt = "%(reason)s"


class RPCForbidden(MalformedMessage):
    """The sender's broker account (its role) may not send this message; see
    ``common.rpc.policy``."""

    msg_fmt = "%(sender)s may not send %(method)s: %(reason)s"


class RPCVersionCapError(MininovaException):
    """A client asked to send a message newer than its [upgrade_levels] cap (a bug:
    ``can_send_version`` says what may be sent)."""

    msg_fmt = "Requested message version %(version)s is above the version cap %(version_cap)s"


class NoValidHost(MininovaException):
    """The scheduler found no host for a VM (select_destinations)."""

    msg_fmt = "No valid host was found. %(reason)s"


# Non-user errors raised inside the compute/virt layers; they end as a VM fault.
class BuildFailed(MininovaException):
    msg_fmt = "Build of VM %(instance)s failed: %(reason)s"


class NoMoreFixedIps(MininovaException):
    msg_fmt = "No fixed IP address is free in network %(network)s."


class FixedIpInUse(MininovaException):
    msg_fmt = ("Fixed IP %(address)s of network %(network)s is already given to MAC "
               "%(mac)s there.")


class ImageUnavailable(MininovaException):
    msg_fmt = "Image %(image)s is unavailable: %(reason)s"


class HypervisorError(MininovaException):
    msg_fmt = "Hypervisor error: %(reason)s"


class MigrationError(MininovaException):
    msg_fmt = "Migration of VM %(instance)s failed: %(reason)s"


class SnapshotFailed(MininovaException):
    msg_fmt = "Snapshot of VM %(instance)s failed: %(reason)s"


class MigrationAborted(MigrationError):
    msg_fmt = "Migration of VM %(instance)s was aborted."


def by_name(name):
    """The class of this module called ``name`` (a MininovaException), or None."""
    return _REGISTRY.get(name)


def describe(exc):
    """One line saying what went wrong, for faults, logs and reports: a
    mininova error's own message (it is written for the reader), anything
    else as its class and text (the class is often all a bare error says)."""
    if isinstance(exc, MininovaException):
        return exc.message
    text = str(exc)
    return "%s: %s" % (type(exc).__name__, text) if text else type(exc).__name__
