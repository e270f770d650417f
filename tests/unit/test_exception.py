"""One exception hierarchy: every class in common/exception.py, and a remote
error arrives as its class whatever the receiving process imported."""
import ast
import json
import os
import subprocess
import sys

import pytest

from common import exception
from common.rpc import protocol

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGES = ("common", "nova_api", "nova_compute", "nova_conductor", "nova_manage",
            "nova_scheduler", "mininova_lab")


def _python_files():
    for package in PACKAGES:
        for top, _, files in os.walk(os.path.join(ROOT, package)):
            for name in files:
                if name.endswith(".py"):
                    yield os.path.join(top, name)


def test_no_mininova_exception_is_defined_outside_common_exception():
    names = set(exception._REGISTRY)
    strays = []
    for path in _python_files():
        if path == os.path.join(ROOT, "common", "exception.py"):
            continue
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        for node in ast.walk(tree):
            if not isinstance(node, ast.ClassDef):
                continue
            for base in node.bases:
                base_name = base.attr if isinstance(base, ast.Attribute) else getattr(
                    base, "id", None)
                if base_name in names:
                    strays.append("%s: %s" % (os.path.relpath(path, ROOT), node.name))
    assert strays == []


def test_by_name_knows_only_the_classes_of_common_exception():
    assert exception.by_name("ServerGroupNotFound") is exception.ServerGroupNotFound
    assert exception.by_name("MininovaException") is exception.MininovaException
    assert exception.by_name("ValueError") is None

    class Elsewhere(exception.NotFound):  # not registered: not from the wire
        pass
    assert exception.by_name("Elsewhere") is None
    with pytest.raises(exception.RemoteError) as info:
        protocol.decode_reply(protocol.encode_failure(Elsewhere("x")))
    assert info.value.kwargs == {"exc_type": "Elsewhere", "value": "x"}


def test_two_classes_of_one_name_are_refused():
    with pytest.raises(TypeError, match="two exception classes named NotFound"):
        type("NotFound", (exception.MininovaException,), {"__module__": exception.__name__})


@pytest.mark.parametrize("cls, kwargs, code", [
    (exception.ServerGroupNotFound, {"group": "g1"}, 404),
    (exception.QuotaExceeded, {"resource": "cores", "requested": 4, "used": 18,
                               "limit": 20}, 403),
    (exception.Unauthorized, {"reason": "token expired"}, 401),
    (exception.MarkerNotFound, {"marker": "vm-9"}, 400),
])
def test_a_remote_error_arrives_as_its_class_in_a_process_that_never_imported_it(
        cls, kwargs, code):
    # The reply a conductor sends; decoded in a fresh interpreter that imports
    # only the RPC layer (not common.db, where these classes used to live).
    reply = protocol.encode_failure(cls(**kwargs))
    script = (
        "import json, sys\n"
        "from common.rpc import protocol\n"
        "assert not [m for m in sys.modules if m.startswith('common.db')]\n"
        "try:\n"
        "    protocol.decode_reply(sys.stdin.read())\n"
        "except Exception as e:\n"
        "    print(json.dumps([type(e).__module__, type(e).__name__, e.code, e.kwargs,\n"
        "                      str(e)]))\n")
    out = subprocess.run([sys.executable, "-c", script], input=reply, cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == ["common.exception", cls.__name__, code, kwargs,
                               str(cls(**kwargs))]
