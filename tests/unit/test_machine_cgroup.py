"""deploy/machine-cgroup.sh: the cpuset partition libvirtd puts domains in is
made with CPUs and memory nodes before any domain starts (a directory tree
stands in for the cgroup v1 cpuset hierarchy)."""
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "deploy", "machine-cgroup.sh")


def prepare(root):
    subprocess.run(["bash", "-c", 'source "$0"; prepare_machine_cgroup "$1"', SCRIPT, str(root)],
                   check=True, timeout=30)


def write(path, text):
    path.write_text(text)


def test_a_missing_partition_gets_the_roots_cpus_and_memory_nodes(tmp_path):
    write(tmp_path / "cpuset.cpus", "0-1\n")
    write(tmp_path / "cpuset.mems", "0\n")
    prepare(tmp_path)
    assert (tmp_path / "machine" / "cpuset.cpus").read_text().strip() == "0-1"
    assert (tmp_path / "machine" / "cpuset.mems").read_text().strip() == "0"


def test_an_existing_partition_keeps_what_it_has_and_gets_what_it_lacks(tmp_path):
    write(tmp_path / "cpuset.cpus", "0-3\n")
    write(tmp_path / "cpuset.mems", "0\n")
    (tmp_path / "machine").mkdir()
    write(tmp_path / "machine" / "cpuset.cpus", "1\n")
    write(tmp_path / "machine" / "cpuset.mems", "")
    prepare(tmp_path)
    assert (tmp_path / "machine" / "cpuset.cpus").read_text().strip() == "1"
    assert (tmp_path / "machine" / "cpuset.mems").read_text().strip() == "0"


def test_nothing_is_made_without_a_cpuset_hierarchy(tmp_path):
    prepare(tmp_path)   # cgroup v2: no cpuset.cpus at the v1 root
    assert not (tmp_path / "machine").exists()
