#!/usr/bin/env bash
# What `make test` needs beyond a mininova host (deploy/install-host.sh):
# the shellcheck linter (for the set-up scripts), ruby (`ruby -wc Vagrantfile`),
# systemd-analyze (the units are verified), xorriso (reads config drives back),
# OpenSSH's client (logs into guests), HAProxy (in front of several APIs: the
# lab's deploy/lab/ha-apis.sh runs its own haproxy process, never the system's
# service), and cloud-init's own config-drive reader:
# Debian's cloud-init package unpacked into $CLOUD_INIT_DIR, never installed (on
# a host it would act at the next boot); its Python dependencies come with the
# venv's test extras. Installs only what is missing.
set -euo pipefail
[[ $(id -u) -eq 0 ]] || { echo "install-test-tools.sh: must run as root" >&2; exit 1; }
todo=()
command -v shellcheck >/dev/null || todo+=(shellcheck)
command -v ruby >/dev/null || todo+=(ruby)
command -v systemd-analyze >/dev/null || todo+=(systemd)
command -v xorriso >/dev/null || todo+=(xorriso)
command -v ssh >/dev/null && command -v ssh-keygen >/dev/null || todo+=(openssh-client)
command -v haproxy >/dev/null || [[ -x /usr/sbin/haproxy ]] || todo+=(haproxy)
apt_updated=0
if ((${#todo[@]})); then
    echo "install-test-tools.sh: installing ${todo[*]}"
    apt-get update -q
    apt_updated=1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        -o Dpkg::Options::=--force-confold "${todo[@]}"
fi

CLOUD_INIT_DIR=${MININOVA_CLOUD_INIT_DIR:-/var/cache/mininova/cloud-init}
if [[ ! -f $CLOUD_INIT_DIR/usr/lib/python3/dist-packages/cloudinit/sources/DataSourceConfigDrive.py ]]; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    chown _apt "$tmp" 2>/dev/null || true   # apt downloads as _apt
    if ! (cd "$tmp" && apt-get download -q cloud-init); then
        ((apt_updated)) || apt-get update -q
        (cd "$tmp" && apt-get download -q cloud-init)
    fi
    mkdir -p "${CLOUD_INIT_DIR%/*}"
    rm -rf "$CLOUD_INIT_DIR.new"
    dpkg-deb -x "$tmp"/cloud-init_*.deb "$CLOUD_INIT_DIR.new"
    rm -rf "$CLOUD_INIT_DIR"
    mv "$CLOUD_INIT_DIR.new" "$CLOUD_INIT_DIR"
    echo "install-test-tools.sh: cloud-init unpacked in $CLOUD_INIT_DIR"
fi
echo "install-test-tools.sh: test tools ready"
