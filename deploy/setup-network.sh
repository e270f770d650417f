#!/usr/bin/env bash
# Define (if missing) and start (if inactive) the libvirt NAT network that
# mininova guests attach to: "mininova", bridge virbr-mn, 192.168.123.0/24,
# gateway .1, DHCP .10-.250, autostart on. Idempotent. libvirt's own "default"
# network is left alone. Expects libvirtd to be running (start-libvirt.sh).
#
# Usage: setup-network.sh
#   env MININOVA_LIBVIRT_URI   libvirt URI (default qemu:///system)
#   env MININOVA_NET_NAME, MININOVA_NET_BRIDGE, MININOVA_NET_PREFIX (first three
#       octets): another network of the same shape (default mininova, virbr-mn,
#       192.168.123)
#   env MININOVA_NET_RESTART=1 apply a changed definition to a running network
#                              now (net-destroy + net-start: attached guests
#                              lose their link); otherwise it applies at the
#                              network's next start.
set -euo pipefail

URI=${MININOVA_LIBVIRT_URI:-qemu:///system}
NET=${MININOVA_NET_NAME:-mininova}
BRIDGE=${MININOVA_NET_BRIDGE:-virbr-mn}
P=${MININOVA_NET_PREFIX:-192.168.123}
virsh_() { virsh -q -c "$URI" "$@"; }
log() { echo "setup-network.sh: $*"; }
info() { virsh_ net-info "$NET" | awk -v k="$1:" '$1 == k {print $2}'; }

# stp='off': with STP on, the kernel clamps forward_delay to >= 2 s, so every
# new guest port spends ~4 s in listening/learning and drops the first DHCP
# discovers. no-ping: dnsmasq otherwise pings an address (ARP, ~3 s timeout)
# before offering it, and drops the client's DISCOVERs meanwhile: +3 s per boot.
# The addresses of this range are only ever handed out by this dnsmasq.
xml=$(mktemp)
trap 'rm -f "$xml"' EXIT
cat > "$xml" <<XML
<network xmlns:dnsmasq='http://libvirt.org/schemas/network/dnsmasq/1.0'>
  <name>$NET</name>
  <forward mode='nat'/>
  <bridge name='$BRIDGE' stp='off' delay='0'/>
  <ip address='$P.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='$P.10' end='$P.250'/>
    </dhcp>
  </ip>
  <dnsmasq:options>
    <dnsmasq:option value='no-ping'/>
  </dnsmasq:options>
</network>
XML

current() {  # does the (live, or with --inactive the persistent) definition match?
    local x
    x=$(virsh_ net-dumpxml "$@" "$NET")
    grep -q "stp='off'" <<<"$x" && grep -q "value='no-ping'" <<<"$x"
}
if ! virsh_ net-info "$NET" >/dev/null 2>&1; then
    virsh_ net-define "$xml" >/dev/null
    log "defined network $NET"
elif ! current --inactive; then
    # A redefinition must carry the existing UUID ("already exists with uuid").
    sed -i "s|<name>$NET</name>|&<uuid>$(virsh_ net-uuid "$NET")</uuid>|" "$xml"
    virsh_ net-define "$xml" >/dev/null
    log "updated the definition of $NET"
fi
if [[ $(info Active) == yes ]] && ! current; then
    if [[ -n ${MININOVA_NET_RESTART:-} ]]; then
        virsh_ net-destroy "$NET" >/dev/null
        log "stopped $NET to apply its new definition"
    else
        log "the running $NET still has its old settings; they apply when it next" \
            "starts (MININOVA_NET_RESTART=1 $0 restarts it now; attached guests lose their link)" >&2
    fi
fi

if [[ $(info Active) != yes ]]; then
    virsh_ net-start "$NET" >/dev/null
    log "started network $NET"
fi
if [[ $(info Autostart) != yes ]]; then
    virsh_ net-autostart "$NET" >/dev/null
    log "autostart enabled for $NET"
fi
virsh_ net-info "$NET"
