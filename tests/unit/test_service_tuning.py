"""common.service's process tuning: the malloc arena cap is accepted by
glibc (mallopt answers 1), and each daemon applies it before its threads."""
import ast
import os
import platform

from common import service

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_glibc_takes_the_arena_cap():
    if platform.libc_ver()[0] == "glibc":
        assert service.tune_malloc() is True


def test_every_daemon_caps_its_arenas_first():
    for package in ("nova_api", "nova_scheduler", "nova_conductor", "nova_compute"):
        tree = ast.parse(open(os.path.join(ROOT, package, "cmd.py")).read())
        main = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main")
        first = main.body[0]
        assert ast.unparse(first).startswith("service.tune_malloc("), package


def test_glibc_takes_the_mmap_threshold():
    if platform.libc_ver()[0] == "glibc":
        assert service.tune_malloc(mmap_threshold=256 * 1024) is True
