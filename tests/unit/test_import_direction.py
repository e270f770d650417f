"""Imports point one way: api -> the services' rpcapi clients -> common.

Every module of the project's packages is parsed (imports inside functions
included) and each import of another project package is checked against
MAY_IMPORT; ``import libvirt`` against LIBVIRT_IMPORTERS. docs/architecture.md
shows MAY_IMPORT as the table ``rules_table()`` renders; a test keeps the two
the same.
"""
import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The packages whose modules are checked, and the project packages an import
# is checked against (tests/ may import anything; only bench/ is told not to).
CHECKED = ("common", "nova_api", "nova_scheduler", "nova_conductor", "nova_compute",
           "nova_manage", "mininova_client", "mininova_lab", "bench")
PROJECT = CHECKED + ("tests",)
_ANY_SERVICE = ("common", "nova_api", "nova_scheduler", "nova_conductor", "nova_compute",
                "nova_manage", "mininova_lab")

# package -> what of the project it may import besides itself: a package, or
# one module of it (and what is inside that module). Anything else of the
# project is an import against the direction.
MAY_IMPORT = {
    "common": (),
    "nova_scheduler": ("common", "nova_conductor.rpcapi"),
    "nova_conductor": ("common", "nova_scheduler.rpcapi", "nova_compute.rpcapi"),
    "nova_compute": ("common", "nova_conductor.rpcapi"),
    "nova_api": ("common", "nova_conductor.rpcapi", "nova_scheduler.rpcapi",
                 "nova_compute.rpcapi"),
    # Operator tools: the clients, plus the image store images are registered
    # into and the libvirt diagnosis the doctor shares with the driver.
    "nova_manage": ("common", "nova_conductor.rpcapi", "nova_scheduler.rpcapi",
                    "nova_compute.rpcapi", "nova_api.imagestore",
                    "nova_compute.virt.libvirt.diagnose"),
    "mininova_client": (),                   # the CLI: standard library only, over HTTP
    "mininova_lab": ("common", "nova_manage.cmd"),   # runs the daemons as processes
    "bench": _ANY_SERVICE,                   # measures the whole product, never via tests/
}

# Who may ``import libvirt``: the drivers, and the tools that drive libvirt
# itself rather than mininova (the bench's physical floor: libvirt-python
# without mininova; a lab host's private libvirtd).
LIBVIRT_IMPORTERS = ("nova_compute.virt", "bench", "mininova_lab.sim_host",
                     "mininova_lab.raw_migration")

# (importing module, imported name) -> why it is still there. Each entry must
# still occur: remove it with the import it excuses.
KNOWN_VIOLATIONS = {}


def _within(name, prefix):
    return name == prefix or name.startswith(prefix + ".")


def modules():
    """(module name, path) of every module of the CHECKED packages."""
    for package in CHECKED:
        for folder, _, files in os.walk(os.path.join(ROOT, package)):
            for f in sorted(files):
                if f.endswith(".py"):
                    path = os.path.join(folder, f)
                    parts = os.path.relpath(path, ROOT)[:-3].split(os.sep)
                    if parts[-1] == "__init__":
                        parts.pop()
                    yield ".".join(parts), path


def imported_names(module, path):
    """Every name ``module`` imports: ``a.b`` for ``import a.b``, ``a.b.c``
    for ``from a.b import c`` (relative imports resolved), and the constant
    argument of ``importlib.import_module``."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    is_package = path.endswith("__init__.py")
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")
                keep = len(parts) - node.level + (1 if is_package else 0)
                base = ".".join(parts[:keep] + ([base] if base else []))
            for alias in node.names:
                yield base + "." + alias.name
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)):
            yield node.args[0].value


def violations(module_paths=None):
    """[(module, imported name, rule broken)] of ``module_paths`` ((module
    name, path) pairs), by default the whole tree."""
    found = []
    for module, path in module_paths or modules():
        package = module.split(".")[0]
        for name in imported_names(module, path):
            top = name.split(".")[0]
            if top == "libvirt":
                if not any(_within(module, p) for p in LIBVIRT_IMPORTERS):
                    found.append((module, name, "libvirt outside %s" % ", ".join(
                        LIBVIRT_IMPORTERS)))
            elif top in PROJECT and top != package:
                if not any(_within(name, p) for p in MAY_IMPORT[package]):
                    found.append((module, name, "%s may import only: %s" % (
                        package, ", ".join(MAY_IMPORT[package]) or "no project package")))
    return found


def rules_table():
    """MAY_IMPORT as the Markdown table of docs/architecture.md."""
    lines = ["| package | may import, besides itself, the standard library and "
             "third-party packages |", "|---|---|"]
    for package, allowed in MAY_IMPORT.items():
        lines.append("| `%s` | %s |" % (package, ", ".join("`%s`" % a for a in allowed)
                                         or "nothing of the project"))
    return "\n".join(lines)


def test_every_package_is_ruled():
    assert sorted(MAY_IMPORT) == sorted(CHECKED)


def test_no_module_imports_against_the_direction():
    found = [v for v in violations() if v[:2] not in KNOWN_VIOLATIONS]
    assert not found, "imports against the direction:\n" + "\n".join(
        "%s imports %s (%s)" % v for v in found)


def test_every_known_violation_still_occurs():
    gone = set(KNOWN_VIOLATIONS) - {v[:2] for v in violations()}
    assert not gone, ("no longer imported: remove from KNOWN_VIOLATIONS: %s"
                      % sorted(gone))


def test_the_architecture_doc_shows_these_rules():
    with open(os.path.join(ROOT, "docs", "architecture.md"), encoding="utf-8") as f:
        assert rules_table() in f.read(), (
            "docs/architecture.md must contain the table of MAY_IMPORT:\n" + rules_table())


@pytest.mark.parametrize("module,source,broken", [
    ("common.audit", "from nova_compute import rpcapi", "common may import only"),
    ("common.doctor", "def f():\n    from nova_compute.virt.libvirt import diagnose\n",
     "common may import only"),
    ("nova_scheduler.manager", "import nova_compute.manager", "nova_scheduler may"),
    ("nova_compute.manager", "from nova_scheduler import rpcapi", "nova_compute may"),
    ("nova_compute.manager", "from nova_conductor import manager", "nova_compute may"),
    ("nova_api.app", "from nova_compute.virt import driver", "nova_api may"),
    ("bench.x", "from tests.unit import conftest", "bench may"),
    ("nova_api.x", "import libvirt", "libvirt outside"),
    ("nova_compute.manager", "import libvirt", "libvirt outside"),
])
def test_the_checker_catches(tmp_path, module, source, broken):
    """The checker itself: each kind of wrong import is found, lazy ones too."""
    path = tmp_path / "module.py"
    path.write_text(source)
    assert [v[2] for v in violations([(module, str(path))]) if v[2].startswith(broken)]


def test_the_checker_allows_the_rpcapi_clients(tmp_path):
    path = tmp_path / "cmd.py"
    path.write_text("from nova_conductor.rpcapi import ConductorRPCAPI\n"
                    "from common import exception\nfrom . import manager\n")
    assert violations([("nova_compute.cmd", str(path))]) == []
