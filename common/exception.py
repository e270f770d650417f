"""The one exception hierarchy of mininova.

Every error a user can cause or see is a ``MininovaException`` subclass with an
HTTP ``code``; the API maps them to responses in one error handler, and the RPC
layer carries them across the wire by class name (see ``common.rpc``).
"""


class MininovaException(Exception):
    """Base class. ``msg_fmt`` is formatted with the keyword arguments."""

    code = 500
    msg_fmt = "An unknown error occurred."

    def __init__(self, message=None, **kwargs):
        self.kwargs = kwargs
        if message is None:
            try:
                message = self.msg_fmt % kwargs
            except (KeyError, TypeError):
                message = self.msg_fmt
        self.message = str(message)
        super().__init__(self.message)


class Invalid(MininovaException):
    code = 400
    msg_fmt = "Invalid request: %(reason)s"


class ValidationError(Invalid):
    msg_fmt = "Invalid field '%(field)s': %(reason)s"


class Forbidden(MininovaException):
    code = 403
    msg_fmt = "Forbidden."


class NotFound(MininovaException):
    code = 404
    msg_fmt = "Resource could not be found."


class InstanceNotFound(NotFound):
    msg_fmt = "VM %(instance)s could not be found."


class ImageNotFound(NotFound):
    msg_fmt = "Image %(image)s could not be found."


class FlavorNotFound(NotFound):
    msg_fmt = "Flavor %(flavor)s could not be found."


class HostNotFound(NotFound):
    msg_fmt = "Compute host %(host)s could not be found."


class MethodNotAllowed(MininovaException):
    code = 405
    msg_fmt = "Method not allowed."


class Conflict(MininovaException):
    code = 409
    msg_fmt = "%(reason)s"


class DuplicateName(Conflict):
    msg_fmt = "A %(kind)s named '%(name)s' already exists."


class PayloadTooLarge(MininovaException):
    code = 413
    msg_fmt = "Request body too large (limit %(limit)d bytes)."


class UnsupportedMediaType(MininovaException):
    code = 415
    msg_fmt = "Unsupported content type '%(content_type)s'; use application/json."


class ServiceUnavailable(MininovaException):
    code = 503
    msg_fmt = "Service unavailable: %(reason)s"


class MessagingTimeout(ServiceUnavailable):
    msg_fmt = "No reply to RPC '%(method)s' on '%(topic)s' within %(timeout)s s."


class RemoteError(MininovaException):
    """A remote handler raised something that is not a MininovaException."""

    msg_fmt = "Remote error %(exc_type)s: %(value)s"


# Non-user errors raised inside the compute/virt layers; they end as a VM fault.
class BuildFailed(MininovaException):
    msg_fmt = "Build of VM %(instance)s failed: %(reason)s"


class NoValidHost(MininovaException):
    msg_fmt = "No valid host was found. %(reason)s"


class ImageUnavailable(MininovaException):
    msg_fmt = "Image %(image)s is unavailable: %(reason)s"


class HypervisorError(MininovaException):
    msg_fmt = "Hypervisor error: %(reason)s"


def by_name(name):
    """Return the MininovaException subclass called ``name``, or None."""
    stack = [MininovaException]
    while stack:
        cls = stack.pop()
        if cls.__name__ == name:
            return cls
        stack.extend(cls.__subclasses__())
    return None
