"""Logging set-up: every line carries the request id of the current context."""
import logging
import re
import sys

from common import context


class RequestIdFilter(logging.Filter):
    def filter(self, record):
        ctxt = context.get_current()
        record.request_id = ctxt.request_id if ctxt else "-"
        # Escape control characters so user text can never forge a log line.
        if isinstance(record.msg, str) and record.args:
            try:
                record.msg = record.msg % record.args
                record.args = None
            except (TypeError, ValueError):
                pass
        if isinstance(record.msg, str):
            record.msg = _CONTROL.sub(_escape, record.msg)
        return True


# Line breaks and every other control character (ESC, VT, FF, NEL, U+2028/9)
# are written as escapes: user text can neither forge a line nor drive a terminal.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match):
    char = match.group(0)
    if char in _NAMED:
        return _NAMED[char]
    return "\\x%02x" % ord(char) if ord(char) < 0x100 else "\\u%04x" % ord(char)


FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s [%(request_id)s] %(message)s"


def setup(conf, service):
    handler = (logging.FileHandler(conf.log_file) if conf.log_file
               else logging.StreamHandler(sys.stderr))
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if conf.debug else logging.INFO)
    for noisy in ("amqp", "kombu", "urllib3", "waitress.queue", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger(service).info("%s starting", service)
