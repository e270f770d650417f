#!/usr/bin/env bash
# Define (if missing) and start (if inactive) the libvirt NAT network that
# mininova guests attach to: "mininova", bridge virbr-mn, 192.168.123.0/24,
# gateway .1, DHCP .10-.250, autostart on. Idempotent. libvirt's own "default"
# network is left alone. Expects libvirtd to be running (start-libvirt.sh).
# Usage: setup-network.sh            (env MININOVA_LIBVIRT_URI, default qemu:///system)
set -euo pipefail

URI=${MININOVA_LIBVIRT_URI:-qemu:///system}
NET=mininova
BRIDGE=virbr-mn
virsh_() { virsh -q -c "$URI" "$@"; }
log() { echo "setup-network.sh: $*"; }

if ! virsh_ net-info "$NET" >/dev/null 2>&1; then
    xml=$(mktemp)
    trap 'rm -f "$xml"' EXIT
    cat > "$xml" <<XML
<network>
  <name>$NET</name>
  <forward mode='nat'/>
  <bridge name='$BRIDGE' stp='off' delay='0'/>
  <ip address='192.168.123.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='192.168.123.10' end='192.168.123.250'/>
    </dhcp>
  </ip>
</network>
XML
    virsh_ net-define "$xml" >/dev/null
    log "defined network $NET"
fi

# stp='off': with STP on, the kernel clamps forward_delay to >= 2 s, so every
# new guest port spends ~4 s in listening/learning and drops the first DHCP
# discovers. A network defined earlier with other settings is not rewritten:
if ! virsh_ net-dumpxml --inactive "$NET" | grep -q "<bridge name='$BRIDGE' stp='off'"; then
    log "warning: network $NET exists with a different bridge definition;" \
        "to recreate it: virsh net-destroy $NET; virsh net-undefine $NET; $0" >&2
fi

# A bridge of that name that is not ours (e.g. left over) would make net-start fail.
if [[ $(virsh_ net-info "$NET" | awk '$1 == "Active:" {print $2}') != yes ]]; then
    virsh_ net-start "$NET" >/dev/null
    log "started network $NET"
fi
if [[ $(virsh_ net-info "$NET" | awk '$1 == "Autostart:" {print $2}') != yes ]]; then
    virsh_ net-autostart "$NET" >/dev/null
    log "autostart enabled for $NET"
fi
virsh_ net-info "$NET"
