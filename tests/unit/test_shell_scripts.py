"""Every shell script of the project passes shellcheck (warnings and infos too)."""
import glob
import os
import shutil
import subprocess

from tests import prerequisites

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def scripts():
    found = glob.glob(os.path.join(ROOT, "deploy", "**", "*.sh"), recursive=True)
    return sorted(found) + [os.path.join(ROOT, ".ci", "run")]


def test_shellcheck_finds_nothing():
    prerequisites.require(shutil.which("shellcheck"), "shellcheck (apt: shellcheck; "
                          "deploy/install-test-tools.sh installs it)")
    paths = scripts()
    assert len(paths) >= 10, paths
    proc = subprocess.run(["shellcheck", "--external-sources", *paths], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
