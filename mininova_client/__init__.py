"""``mininova``: the command-line client of the mininova REST API.

Standard library only (urllib, argparse, json), so that it runs wherever
Python does. Exit codes mean something to scripts:

    0 ok   1 API or client error (4xx/5xx)   2 usage error
    3 a --wait that ended in ERROR   4 a --wait that timed out   5 cannot connect
"""
__version__ = "0.1.0"

OK = 0
API_ERROR = 1
USAGE = 2
WAIT_ERROR = 3
WAIT_TIMEOUT = 4
CONNECT = 5


class CLIError(Exception):
    """Ends the command: ``message`` on stderr and exit ``code``."""

    def __init__(self, message, code=API_ERROR):
        super().__init__(message)
        self.message = message
        self.code = code
