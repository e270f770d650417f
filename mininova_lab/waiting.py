"""Waiting for conditions with deadlines: tests never sleep a fixed time."""
import time


class Timeout(AssertionError):
    pass


def wait_for(condition, timeout, interval=0.05, what="condition"):
    """Poll ``condition()`` until it returns something truthy; return it."""
    deadline = time.monotonic() + timeout
    last_error = None
    while True:
        try:
            result = condition()
            if result:
                return result
        except AssertionError as e:
            last_error = e
        if time.monotonic() > deadline:
            raise Timeout("timed out after %.1f s waiting for %s%s" % (
                timeout, what, (": %s" % last_error) if last_error else ""))
        time.sleep(interval)
