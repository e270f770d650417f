#!/usr/bin/env bash
# Install and configure what a mininova compute host needs: libvirt + QEMU (TCG),
# tini, and build deps for libvirt-python. Written for Debian 12 without systemd
# as PID 1. Idempotent: when everything is already there it makes no apt call.
set -euo pipefail

[[ $(id -u) -eq 0 ]] || { echo "install-host.sh: must run as root" >&2; exit 1; }

export DEBIAN_FRONTEND=noninteractive
APT=(apt-get install -y -q --no-install-recommends
     -o Dpkg::Options::=--force-confold -o Dpkg::Options::=--force-confdef)

# libvirtd probes the firewall backend when it starts (and a postinst could start
# it), so iptables is installed in its own pass before anything libvirt.
FIRST_PKGS=(iptables)
PKGS=(libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients libvirt-dev
      pkg-config gcc libc6-dev qemu-system-x86 qemu-utils dnsmasq-base tini
      python3-venv iputils-ping genisoimage)
# Optional: brings users, dirs and sysv init scripts. The -sysv flavour is named
# explicitly, otherwise apt picks -systemd and drags in/upgrades systemd.
SYSTEM_PKGS=(libvirt-daemon-system libvirt-daemon-system-sysv)
SKIP_MARK=/var/lib/mininova/skip-libvirt-daemon-system

missing() {  # print the packages among "$@" that are not installed
    local p
    for p in "$@"; do
        dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed || echo "$p"
    done
}

apt_updated=0
apt_install() {
    local todo
    mapfile -t todo < <(missing "$@")
    ((${#todo[@]})) || return 0
    if ((!apt_updated)); then apt-get update -q; apt_updated=1; fi
    echo "install-host.sh: installing ${todo[*]}"
    "${APT[@]}" "${todo[@]}"
}

# Never let a package postinst start daemons; start-libvirt.sh does that.
# (Docker-derived images already ship one; only remove it if we made it.)
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi

apt_install "${FIRST_PKGS[@]}"
apt_install "${PKGS[@]}"
if [[ ! -e $SKIP_MARK ]] && ! apt_install "${SYSTEM_PKGS[@]}"; then
    echo "install-host.sh: ${SYSTEM_PKGS[*]} failed; continuing without it" >&2
    dpkg --configure -a || true
    apt-get remove -y -q "${SYSTEM_PKGS[@]}" || true
    mkdir -p "${SKIP_MARK%/*}" && touch "$SKIP_MARK"
fi

# libvirtd refuses to start if the qemu user/group or the socket group is missing
# (normally created by libvirt-daemon-system's postinst).
getent group kvm >/dev/null     || groupadd --system kvm
getent group libvirt >/dev/null || groupadd --system libvirt
getent passwd libvirt-qemu >/dev/null ||
    useradd --system -g kvm -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
mkdir -p /var/lib/libvirt/images /var/lib/libvirt/qemu /var/log/libvirt/qemu /var/log/mininova

# No default NAT network autostart: we use no guest networking, and it would create
# a bridge plus iptables rules every time libvirtd starts.
rm -f /etc/libvirt/qemu/networks/autostart/default.xml

# Run QEMU as root without label/ownership juggling (no AppArmor/SELinux here).
conf=/etc/libvirt/qemu.conf
changed=0
for kv in 'user = "root"' 'group = "root"' 'dynamic_ownership = 0' 'security_driver = "none"'; do
    key=${kv%% *}
    # already exactly one active line with the wanted value -> leave the file alone
    [[ $(grep -cE "^[[:space:]]*${key}[[:space:]]*=" "$conf") == 1 ]] && grep -qxF "$kv" "$conf" && continue
    sed -i -E "/^[[:space:]]*${key}[[:space:]]*=/d" "$conf"
    echo "$kv" >> "$conf"
    changed=1
done
if ((changed)) && pgrep -x libvirtd >/dev/null; then
    echo "install-host.sh: $conf changed; restart libvirtd for it to take effect" >&2
fi
echo "install-host.sh: host ready"
