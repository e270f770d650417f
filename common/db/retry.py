"""What a lost database connection means for a transaction, and when running
it again is safe.

A transaction meets a failover or restart of PostgreSQL in one of three
phases, and each leaves the database in a known or unknown state:

- ``connect``: no connection could be had (refused, "the database system is
  starting up"): nothing was sent; always safe to try again;
- ``statement``: the connection died before COMMIT was sent: the server
  rolls back whatever the transaction did (a backend that dies takes its
  uncommitted work with it); safe to run the whole transaction again;
- ``commit``: the connection died after COMMIT was sent and before its
  answer: the commit may or may not have happened. Running the transaction
  again is safe only if it is idempotent (it looks before it writes);
  otherwise the caller must be told that the outcome is unknown.

A statement or COMMIT that the server answered with an error is none of
these: the server rolled the transaction back and said why.
"""
import random

CONNECT, STATEMENT, COMMIT = "connect", "statement", "commit"

# SQLSTATEs of a server going away: class 08 (connection exception),
# admin_shutdown, crash_shutdown, cannot_connect_now.
_DISCONNECT_PGCODES = ("57P01", "57P02", "57P03")
_DISCONNECT_TEXT = (
    "could not connect", "connection refused", "server closed the connection",
    "terminating connection", "the database system is", "connection to server",
    "ssl syscall error", "ssl connection has been closed", "connection already closed",
    "no connection to the server", "could not receive data", "could not send data",
    "connection reset by peer", "broken pipe", "server closed the connection unexpectedly",
    "lost synchronization with server", "connection has been closed unexpectedly",
    "the connection is closed", "the connection is lost", "consuming input failed",
    "sending query failed")


def is_disconnect(e):
    """Whether a SQLAlchemy DBAPIError ``e`` says the connection is gone
    (rather than the server refusing the statement)."""
    if getattr(e, "connection_invalidated", False):
        return True
    orig = getattr(e, "orig", e)
    code = getattr(orig, "pgcode", None) or getattr(orig, "sqlstate", None)  # psycopg2, 3
    if code and (code.startswith("08") or code in _DISCONNECT_PGCODES):
        return True
    text = str(orig).lower()
    return any(s in text for s in _DISCONNECT_TEXT)


def nothing_applied(phase):
    """Whether a transaction whose connection was lost in ``phase`` left
    nothing behind in the database."""
    return phase in (CONNECT, STATEMENT)


def may_run_again(phase, idempotent):
    """Whether a transaction whose connection was lost in ``phase`` may be
    run again: it left nothing, or running it twice does no harm."""
    return nothing_applied(phase) or (phase == COMMIT and idempotent)


def reason(phase):
    """The reason a caller is given (the API's 503, the daemons' logs)."""
    if phase == COMMIT:
        return ("database unreachable at commit: whether the change was made is unknown; "
                "look before trying again")
    return "database unreachable"


class Backoff:
    """Pauses between tries: ``first`` s doubled up to ``longest``, each cut
    by up to half at random (processes that lost the database together do not
    reconnect in lockstep), never beyond ``deadline`` (a ``clock()`` time)."""

    def __init__(self, clock, deadline, first=0.05, longest=1.0, rand=random.random):
        self.clock, self.deadline = clock, deadline
        self.next, self.longest, self.rand = first, longest, rand

    def pause(self):
        """The next pause in seconds, or None once the deadline has passed."""
        left = self.deadline - self.clock()
        if left <= 0:
            return None
        pause = self.next * (1 - self.rand() / 2)
        self.next = min(self.next * 2, self.longest)
        return min(pause, left)
