"""The conductor client as compute's collaborators report through it.

A state change compute has made must not be lost: every call is retried
while the conductor (or its DB) is away, first after ``delay`` s, then
doubling up to 5 s, for ``deadline`` s; then ServiceUnavailable goes to the
caller. Other errors (the conductor answered) are never retried."""
import functools
import logging
import time

from common import exception

LOG = logging.getLogger(__name__)

MAX_DELAY = 5.0


class RetryingConductor:
    def __init__(self, conductor, deadline=120.0, delay=0.5, sleep=time.sleep):
        self.conductor = conductor   # the plain client: one try per call
        self.deadline = deadline
        self.delay = delay
        self._sleep = sleep

    def call(self, method, *args, **kwargs):
        """``method(*args, **kwargs)``, retried while the conductor is away."""
        delay, give_up = self.delay, time.monotonic() + self.deadline
        while True:
            try:
                return method(*args, **kwargs)
            except exception.ServiceUnavailable as e:
                if time.monotonic() > give_up:
                    raise
                LOG.warning("conductor unavailable (%s); retrying in %.1f s", e.message, delay)
                self._sleep(delay)
                delay = min(delay * 2, MAX_DELAY)

    def __getattr__(self, name):
        """Every method of the conductor client, retried as ``call`` does."""
        method = getattr(self.conductor, name)
        if not callable(method):
            return method
        return functools.partial(self.call, method)
