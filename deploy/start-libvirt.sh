#!/usr/bin/env bash
# Start virtlogd and libvirtd if they are not running, then wait until
# qemu:///system answers. Idempotent: never starts a second libvirtd; a libvirtd
# already running (under tini or not) is left alone.
set -euo pipefail

LOG_DIR=${MININOVA_LOG_DIR:-/var/log/mininova}
TIMEOUT=${LIBVIRT_START_TIMEOUT:-30}   # seconds
URI=qemu:///system
mkdir -p "$LOG_DIR"
# shellcheck source=deploy/machine-cgroup.sh
source "$(dirname "$0")/machine-cgroup.sh"

start_daemons() {
    # QEMU's stdout/stderr go through virtlogd; domains fail to start without it.
    pgrep -x virtlogd >/dev/null ||
        virtlogd -d </dev/null >>"$LOG_DIR/virtlogd.log" 2>&1 || true
    # libvirtd runs under `tini -s` (a subreaper): QEMU daemonizes, and its exit
    # must be reaped promptly for libvirt to emit the STOPPED event, and PID 1
    # on these hosts may not reap promptly (the event then comes seconds late). setsid and
    # the redirects detach it from the caller's session and pipes, so make/CI
    # do not wait on it. The tini check covers the instant before it forks libvirtd.
    pgrep -x libvirtd >/dev/null || pgrep -xf 'tini -s -- libvirtd' >/dev/null ||
        { setsid tini -s -- libvirtd </dev/null >>"$LOG_DIR/libvirtd.log" 2>&1 & }
}

prepare_machine_cgroup /sys/fs/cgroup/cpuset
# Retried inside the loop: a daemon that was just stopped may still hold its
# pidfile lock, and then the new one exits at once.
start_daemons
deadline=$((SECONDS + TIMEOUT))
until [[ -S /run/libvirt/virtlogd-sock ]] && virsh -c "$URI" version >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
        echo "start-libvirt.sh: virtlogd/libvirtd not ready after ${TIMEOUT}s" >&2
        tail -n 20 "$LOG_DIR/virtlogd.log" "$LOG_DIR/libvirtd.log" >&2 || true
        exit 1
    fi
    sleep 0.2
    start_daemons
done
echo "start-libvirt.sh: libvirtd ready ($URI)"
