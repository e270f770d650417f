# shellcheck shell=bash
# Sourced by start-libvirt.sh. On a cgroup v1 host without systemd, libvirtd
# makes the "machine" partition itself when the first domain starts, then
# copies cpuset.cpus/mems into it; a domain started at the same moment can see
# the directory before the copy and fails with "No space left on device" on its
# emulator's tasks file. So the partition is made, once, before any domain starts.
#
# prepare_machine_cgroup CPUSET_ROOT: make <root>/machine with the root's CPUs
# and memory nodes where it has none; nothing on cgroup v2 or under systemd.
prepare_machine_cgroup() {
    local root=$1 knob
    local part=$root/machine
    [[ -e $root/cpuset.cpus && ! -e /run/systemd/system ]] || return 0
    mkdir -p "$part" 2>/dev/null || return 0
    for knob in cpuset.cpus cpuset.mems; do
        [[ -n $(cat "$part/$knob" 2>/dev/null) ]] ||
            cat "$root/$knob" >"$part/$knob" 2>/dev/null || true
    done
}
