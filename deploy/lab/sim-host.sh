#!/usr/bin/env bash
# A simulated compute host on this machine: its own network namespace with its
# own address, and its own real libvirtd + virtlogd (QEMU/TCG) that share
# nothing with the host's libvirtd but the binaries.
#
#   sim-host.sh up     NAME INDEX [BASE_DIR]   create/start (idempotent), print the host's facts
#   sim-host.sh down   NAME [BASE_DIR]         destroy+undefine its domains, stop everything, remove it
#   sim-host.sh status NAME [BASE_DIR]         print the facts and what runs (exit 1 when not up)
#   sim-host.sh forward NAME PORT[:TARGET_PORT] [BASE_DIR]
#                                              forward GATEWAY_IP:PORT -> 127.0.0.1:TARGET_PORT
#   sim-host.sh link   NAME up|down [BASE_DIR] plug / unplug the host's network cable
#
# BASE_DIR defaults to /var/lib/mininova-lab; INDEX is 1..254 and picks the
# addresses: the host is 10.77.INDEX.2/24 in netns mn-NAME (veth end mnpINDEX),
# the root namespace side is 10.77.INDEX.1/24 (veth end mnhINDEX). Inside the
# netns, 10.77.0.0/16 is routed via the gateway (other sim hosts are reachable
# when the root namespace forwards), and there is no default route.
#
# `up` prints shell-parsable lines (eval-able: no value holds a blank or quote):
#   LIBVIRT_URI=qemu:///system?socket=BASE_DIR/NAME/run/libvirt-sock
#   NETNS=mn-NAME
#   HOST_IP=10.77.INDEX.2
#   GATEWAY_IP=10.77.INDEX.1
#   MIGRATION_URI=qemu+tcp://10.77.INDEX.2/system (other sim hosts' libvirtd reach
#     this one there: live migration, peer to peer, no authentication: lab only)
#   plus INDEX=, LAB_DIR=, LIBVIRT_SOCKET=, FORWARDS= (ports forwarded to loopback)
#
# How it works (README.md in this directory has the pitfalls):
#  - per-host dirs BASE_DIR/NAME/{etc,run,lib,log,cache} are bind-mounted over
#    /etc/libvirt, /run/libvirt, /var/lib/libvirt, /var/log/libvirt and
#    /var/cache/libvirt in a private mount + UTS namespace (unshare --mount
#    --uts --propagation private; hostname NAME) entered inside the host's
#    network namespace (nsenter --net), with a sysfs of that netns mounted on
#    /sys (the cgroup mounts moved over). virtlogd and `tini -s -- libvirtd` are
#    started there with setsid and keep the namespaces alive; BASE_DIR/NAME/mntns
#    records the mount namespace, so `down` also finds leftover QEMU/dnsmasq.
#  - the daemons run through symlinks named virtlogd-lab / libvirtd-lab, so that
#    `pgrep -x libvirtd` (deploy/start-libvirt.sh) never mistakes them for the
#    host's daemons, and with -p pid files of their own (the defaults,
#    /run/libvirtd.pid and /run/virtlogd.pid, are the host daemons' locks).
#  - services that listen on 127.0.0.1 only (RabbitMQ here) are reached from the
#    netns through tcp-forward.py on GATEWAY_IP (SIM_HOST_FORWARD, default
#    "5672"; entries PORT or PORT:TARGET_PORT).
#
# env: SIM_HOST_TIMEOUT (seconds, default 30) bounds every wait.
#      SIM_HOST_FORWARD  ports forwarded by `up` (default "5672"; "" for none).
#      SIM_HOST_GUEST_NET=1  `up` also runs deploy/setup-network.sh against the
#                        host's libvirtd: its own virbr-mn/192.168.123.0/24 NAT
#                        network and dnsmasq, inside its netns (guests with NICs).
#      SIM_HOST_CAPS_CACHE  seed of the QEMU capabilities cache, shared by all
#                        sim hosts (default /var/cache/mininova-lab/qemu-capabilities)
# Exit status: 0 ok, 1 failure, 2 usage, 3 INDEX used by another sim host.
set -euo pipefail

LAB=$(dirname "$(realpath "${BASH_SOURCE[0]}")")
DEFAULT_BASE=/var/lib/mininova-lab
TIMEOUT=${SIM_HOST_TIMEOUT:-30}
# Shared by all sim hosts of all BASE_DIRs: only a seed, libvirt validates it.
CAPS_SEED=${SIM_HOST_CAPS_CACHE:-/var/cache/mininova-lab/qemu-capabilities}
PROG=sim-host.sh

die() { echo "$PROG: $*" >&2; exit 1; }
conflict() { echo "$PROG: $*" >&2; exit 3; }   # INDEX taken: a caller may pick another
log() { echo "$PROG: $*" >&2; }
usage() { sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
now_ms() { echo $(( ${EPOCHREALTIME/./} / 1000 )); }

[[ $(id -u) -eq 0 ]] || die "must run as root"
(($# >= 2)) || usage
CMD=$1 NAME=$2
INDEX='' PORTSPEC='' LINK=''
case $CMD in
up)      (($# >= 3 && $# <= 4)) || usage; INDEX=$3; BASE=${4:-$DEFAULT_BASE} ;;
down|status) (($# <= 3)) || usage; BASE=${3:-$DEFAULT_BASE} ;;
forward) (($# >= 3 && $# <= 4)) || usage; PORTSPEC=$3; BASE=${4:-$DEFAULT_BASE} ;;
link)    (($# >= 3 && $# <= 4)) || usage; LINK=$3; BASE=${4:-$DEFAULT_BASE} ;;
*) usage ;;
esac
[[ $NAME =~ ^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$ ]] || die "bad NAME '$NAME' ([A-Za-z0-9_.-], at most 40)"
BASE=$(realpath -m "$BASE")
[[ $BASE =~ ^/[A-Za-z0-9_./+-]+$ && $BASE != / ]] || die "bad BASE_DIR '$BASE'"

D=$BASE/$NAME
NETNS=mn-$NAME
SOCK=$D/run/libvirt-sock
URI="qemu:///system?socket=$SOCK"
LDPATH=$D/bin/libvirtd-lab      # argv[0] of this host's libvirtd: unique per host
VLPATH=$D/bin/virtlogd-lab
# A unix socket path is at most 107 bytes.
((${#SOCK} <= 107)) || die "socket path $SOCK is too long (${#SOCK} > 107 bytes): use a shorter BASE_DIR"

if [[ -z $INDEX && -s $D/index ]]; then INDEX=$(<"$D/index"); fi
if [[ -n $INDEX ]]; then
    if ! [[ $INDEX =~ ^[0-9]+$ ]] || ((INDEX < 1 || INDEX > 254)); then die "bad INDEX '$INDEX' (1..254)"; fi
    INDEX=$((10#$INDEX))
    HOSTIF=mnh$INDEX PEERIF=mnp$INDEX
    GW=10.77.$INDEX.1 IP=10.77.$INDEX.2
fi

# Serialise operations on one host (not across hosts). The lock fd is closed
# for every daemon we start (9>&-), or the daemons would hold it forever.
mkdir -p "$BASE/.locks"
exec 9>"$BASE/.locks/$NAME.lock"
flock -w "$TIMEOUT" 9 || die "another $PROG holds $BASE/.locks/$NAME.lock"

# --- processes -----------------------------------------------------------------
alive() {  # PID: exists and is not a zombie
    local s
    s=$(sed -n 's/^State:[[:space:]]*\(.\).*/\1/p' "/proc/$1/status" 2>/dev/null) || return 1
    [[ -n $s && $s != Z ]]
}
pid_of() {  # PIDFILE NEEDLE: print the pid if alive and its command line holds NEEDLE
    local pid
    [[ -s $1 ]] || return 1
    pid=$(<"$1")
    [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$2" || return 1
    echo "$pid"
}
libvirtd_pid() { pid_of "$D/pids/libvirtd.pid" "$LDPATH"; }
virtlogd_pid() { pid_of "$D/pids/virtlogd.pid" "$VLPATH"; }
tini_pid()     { pid_of "$D/pids/tini.pid" "$LDPATH"; }

MY_MNT=$(readlink /proc/self/ns/mnt)
INIT_MNT=$(readlink /proc/1/ns/mnt 2>/dev/null || echo "$MY_MNT")
mntns_pids() {  # pids of all live processes in this host's private mount namespace
    local ns p
    [[ -s $D/mntns ]] || return 0
    ns=$(<"$D/mntns")
    # Never mistake the root mount namespace for the private one.
    [[ $ns == mnt:\[*\] && $ns != "$MY_MNT" && $ns != "$INIT_MNT" ]] || return 0
    for p in /proc/[0-9]*; do
        [[ $(readlink "$p/ns/mnt" 2>/dev/null) == "$ns" ]] && alive "${p#/proc/}" && echo "${p#/proc/}"
    done
    return 0
}
netns_pids() {
    [[ -e /run/netns/$NETNS ]] || return 0
    local p
    for p in $(ip netns pids "$NETNS" 2>/dev/null); do alive "$p" && echo "$p"; done
    return 0
}
wait_gone() {  # MS PID...: poll until none of the PIDs is alive, at most MS ms
    local deadline=$(( $(now_ms) + $1 )) p
    shift
    while :; do
        LEFT=()
        for p in "$@"; do alive "$p" && LEFT+=("$p"); done
        ((${#LEFT[@]})) || return 0
        (($(now_ms) < deadline)) || return 1
        sleep 0.05
    done
}
stop_pids() {  # WHAT PID...: SIGTERM, wait (deadline), then SIGKILL and wait again
    local what=$1
    shift
    (($#)) || return 0
    kill -TERM "$@" 2>/dev/null || true
    wait_gone 10000 "$@" && return 0
    log "$what: SIGKILL ${LEFT[*]} (no exit 10 s after SIGTERM)"
    kill -KILL "${LEFT[@]}" 2>/dev/null || true
    wait_gone 5000 "$@" && return 0
    log "$what: still alive after SIGKILL: ${LEFT[*]}"
    return 1
}
virsh_() { virsh -q -c "$URI" "$@"; }
answers() { [[ -S $SOCK ]] && timeout 10 virsh -c "$URI" version >/dev/null 2>&1; }
wait_until() {  # WHAT CMD...: poll CMD until it succeeds or SIM_HOST_TIMEOUT passes
    local what=$1 deadline=$(( $(now_ms) + TIMEOUT * 1000 ))
    shift
    until "$@"; do
        (($(now_ms) < deadline)) || return 1
        sleep 0.02
    done
}

# --- pieces of `up` -------------------------------------------------------------
make_dirs() {
    mkdir -p "$D"/{etc,run,lib,log,cache,pids,logs,bin}
    mkdir -p "$D"/lib/{qemu,images,dnsmasq,boot} "$D"/log/qemu "$D"/cache/qemu
    chmod 755 "$D/run" "$D/lib" "$D/log"
    chmod 711 "$D/cache" "$D/cache/qemu" "$D/lib/images" "$D/lib/boot"
    chmod 751 "$D/lib/qemu"
    ln -sfn "$(PATH=$PATH:/usr/sbin:/sbin command -v libvirtd)" "$LDPATH"
    ln -sfn "$(PATH=$PATH:/usr/sbin:/sbin command -v virtlogd)" "$VLPATH"
    [[ -x $LDPATH && -x $VLPATH ]] || die "libvirtd/virtlogd not installed (deploy/install-host.sh)"
    echo "$INDEX" > "$D/index"
}

# Per-host /etc/libvirt: a copy of the real one without the host's domains,
# autostart links or anything else that would make this libvirtd start things.
seed_etc() {
    [[ -e $D/etc/.mininova-lab-seeded ]] && return 0
    rm -rf "${D:?}/etc" && mkdir -p "$D/etc/qemu/networks"
    # Not /etc/libvirt/qemu/*.xml: the host's persistent domains would be
    # defined here too, and autostarted ones started a second time on the same
    # disks. (Nor a plain `cp -a` of the whole dir: the host's libvirtd writes
    # and deletes those files all the time, a vanishing file fails the copy.)
    local f
    for f in /etc/libvirt/*; do
        [[ ${f##*/} == qemu ]] || cp -a "$f" "$D/etc/" 2>/dev/null || true
    done
    cp -a /etc/libvirt/qemu/networks/*.xml "$D/etc/qemu/networks/" 2>/dev/null || true
    find "$D/etc" -type d -name autostart -prune -exec rm -rf {} +
    [[ -s $D/etc/libvirtd.conf && -s $D/etc/qemu.conf ]] ||
        die "could not copy /etc/libvirt (libvirtd.conf, qemu.conf) to $D/etc"
    local conf=$D/etc/qemu.conf kv key
    touch "$conf"
    for kv in 'user = "root"' 'group = "root"' 'dynamic_ownership = 0' 'security_driver = "none"'; do
        key=${kv%% *}
        sed -i -E "/^[[:space:]]*${key}[[:space:]]*=/d" "$conf"
        echo "$kv" >> "$conf"
    done
    # QEMU capabilities as probed by an earlier sim host (libvirt validates the
    # cache and re-probes when it does not match): saves ~1.5 s of probing per
    # host. The host libvirtd's own cache is not accepted (CPUID differs, see
    # the taskset note below), so it is not used.
    if [[ -d $CAPS_SEED ]]; then
        mkdir -p "$D/cache/qemu/capabilities"
        cp -a "$CAPS_SEED/." "$D/cache/qemu/capabilities/" 2>/dev/null || true
    fi
    touch "$D/etc/.mininova-lab-seeded"
}

set_conf() {  # FILE 'key = value': the one setting of key in FILE
    local key=${2%% *}
    sed -i -E "/^[[:space:]]*${key}[[:space:]]*=/d" "$1"
    echo "$2" >> "$1"
}

# Live migration between sim hosts (peer to peer, block copy): each libvirtd
# listens on its own address without authentication (lab only: real hosts use
# TLS or SASL), has a host UUID of its own that stays the same across restarts
# (libvirt refuses to migrate to a libvirtd with the source's UUID, and with
# none set it makes up a new one at every start here), and QEMU announces this
# address for the incoming memory and NBD disk streams (else the host name,
# which does not resolve in the other namespaces).
conf_migration() {
    local h
    h=$(printf '%s' "$NAME" | md5sum)
    set_conf "$D/etc/libvirtd.conf" 'listen_tcp = 1'
    set_conf "$D/etc/libvirtd.conf" 'listen_tls = 0'
    set_conf "$D/etc/libvirtd.conf" "listen_addr = \"$IP\""
    set_conf "$D/etc/libvirtd.conf" 'auth_tcp = "none"'
    set_conf "$D/etc/libvirtd.conf" \
        "host_uuid = \"${h:0:8}-${h:8:4}-${h:12:4}-${h:16:4}-${h:20:12}\""
    set_conf "$D/etc/qemu.conf" "migration_host = \"$IP\""
}

setup_net() {
    [[ -e /run/netns/$NETNS ]] || ip netns add "$NETNS"
    if ! ip link show "$HOSTIF" >/dev/null 2>&1; then
        # (fails when another `up` with this INDEX won the race: checked below)
        ip link add "$HOSTIF" type veth peer name "$PEERIF" netns "$NETNS" 2>/dev/null || true
    fi
    ip -n "$NETNS" link show "$PEERIF" >/dev/null 2>&1 ||
        conflict "$HOSTIF exists but its peer $PEERIF is not in $NETNS: INDEX $INDEX belongs to another sim host"
    # Only the addresses of this INDEX; no IPv6 on the link (no DAD/RS noise).
    sysctl -qw "net.ipv6.conf.$HOSTIF.disable_ipv6=1" 2>/dev/null || true
    ip netns exec "$NETNS" sysctl -qw "net.ipv6.conf.$PEERIF.disable_ipv6=1" 2>/dev/null || true
    ip addr replace "$GW/24" dev "$HOSTIF"
    ip link set "$HOSTIF" up
    ip -n "$NETNS" link set lo up
    ip -n "$NETNS" addr replace "$IP/24" dev "$PEERIF"
    ip -n "$NETNS" link set "$PEERIF" up
    ip -n "$NETNS" route replace 10.77.0.0/16 via "$GW" dev "$PEERIF"
}

listening() { ss -Hltn "sport = :$2" 2>/dev/null | awk '{print $4}' | grep -qxF "$1:$2"; }
start_forward() {  # PORT[:TARGET_PORT]
    local lport=${1%%:*} tport=${1#*:} pid
    [[ $lport =~ ^[0-9]+$ && $tport =~ ^[0-9]+$ ]] || die "bad forward '$1' (PORT or PORT:TARGET_PORT)"
    if pid=$(pid_of "$D/pids/fwd-$lport.pid" "tcp-forward.py $GW $lport "); then
        listening "$GW" "$lport" && return 0
    fi
    setsid python3 "$LAB/tcp-forward.py" "$GW" "$lport" 127.0.0.1 "$tport" \
        </dev/null >>"$D/logs/fwd-$lport.log" 2>&1 9>&- &
    echo $! > "$D/pids/fwd-$lport.pid"
    wait_until "forwarder" listening "$GW" "$lport" ||
        die "forwarder $GW:$lport -> 127.0.0.1:$tport not listening after ${TIMEOUT}s (log: $D/logs/fwd-$lport.log)"
    grep -qxF "$lport" "$D/forwards" 2>/dev/null || echo "$lport" >> "$D/forwards"
}

# The script run inside the (new or existing) private mount namespace: mount
# (when new), then start whichever daemon is missing, detached (setsid).
# Args: D NEW START_VIRTLOGD START_LIBVIRTD HOSTNAME CPU
# libvirtd runs pinned to one CPU (taskset; QEMU processes are not: libvirt
# gives each domain all host CPUs): libvirt checks its QEMU capabilities cache
# against the host's CPUID, and on these VMs CPUID leaf 0x1f reports the x2APIC
# id of the CPU that asked, so an unpinned libvirtd re-probes QEMU (~1.5 s) at
# about every other start.
read -r -d '' INNER <<'EOS' || true
set -euo pipefail
D=$1 new=$2
if [[ $new == 1 ]]; then
    mount --make-rprivate /
    mount --bind "$D/etc"   /etc/libvirt
    mount --bind "$D/run"   /run/libvirt
    mount --bind "$D/lib"   /var/lib/libvirt
    mount --bind "$D/log"   /var/log/libvirt
    mount --bind "$D/cache" /var/cache/libvirt
    # A sysfs of this network namespace: the inherited one shows the root
    # namespace's devices, and libvirt writes bridge/port settings under
    # /sys/class/net/NAME/ -- into the HOST's devices of the same name (virbr-mn,
    # vnetN). Like `ip netns exec`, but keeping the cgroup mounts underneath.
    mkdir -p "$D/.cgroup"
    mount --rbind /sys/fs/cgroup "$D/.cgroup"
    mount -t sysfs sysfs /sys
    mount --move "$D/.cgroup" /sys/fs/cgroup
    hostname "$5"
    # The copies of /run/netns/* (the network namespaces of other sim hosts)
    # would keep those namespaces alive after their `ip netns del`: drop them
    # (private mounts: nothing propagates to the root namespace).
    awk '$5 == "/run/netns" || $5 ~ "^/run/netns/" {print $5}' /proc/self/mountinfo |
        sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
fi
if [[ $3 == 1 ]]; then
    setsid "$D/bin/virtlogd-lab" -p "$D/pids/virtlogd.pid" \
        </dev/null >>"$D/logs/virtlogd.log" 2>&1 &
fi
if [[ $4 == 1 ]]; then
    setsid taskset -c "$6" tini -s -- "$D/bin/libvirtd-lab" --listen -p "$D/pids/libvirtd.pid" \
        </dev/null >>"$D/logs/libvirtd.log" 2>&1 &
    echo $! > "$D/pids/tini.pid"
fi
EOS

start_daemons() {
    local vl=1 ld=1 anchor CPU
    CPU=$(awk '/^Cpus_allowed_list:/ {split($2, a, /[,-]/); print a[1]}' /proc/self/status)
    virtlogd_pid >/dev/null && vl=0
    libvirtd_pid >/dev/null && ld=0
    tini_pid >/dev/null && ld=0          # libvirtd is starting, pid file not yet written
    ((vl || ld)) || return 0
    anchor=$(mntns_pids | head -n1)
    if [[ -n $anchor ]]; then
        # Part of the host still runs (e.g. domains whose libvirtd died): restart
        # the missing daemon in the same namespace; libvirtd reconnects to them.
        log "$NAME: restarting$( ((vl)) && echo " virtlogd")$( ((ld)) && echo " libvirtd") in its namespace"
        nsenter --mount="/proc/$anchor/ns/mnt" --uts="/proc/$anchor/ns/uts" \
            --net="/run/netns/$NETNS" -- \
            bash -c "$INNER" inner "$D" 0 "$vl" "$ld" "$NAME" "$CPU" </dev/null 9>&-
    else
        rm -f "$D/mntns" "$SOCK" "$D/run/virtlogd-sock"
        nsenter --net="/run/netns/$NETNS" -- unshare --mount --uts --propagation private -- \
            bash -c "$INNER" inner "$D" 1 "$vl" "$ld" "$NAME" "$CPU" </dev/null 9>&-
    fi
}

record_mntns() {
    local pid
    pid=$(virtlogd_pid || libvirtd_pid || tini_pid) || return 1
    readlink "/proc/$pid/ns/mnt" > "$D/mntns.new" && mv -f "$D/mntns.new" "$D/mntns"
}

ready() { [[ -S $D/run/virtlogd-sock ]] && answers; }

save_caps() {  # keep this host's QEMU capabilities cache as the seed of later hosts
    local tmp
    compgen -G "$D/cache/qemu/capabilities/*.xml" >/dev/null || return 0
    # (re-probed here: libvirt or QEMU changed since the seed was taken)
    diff -rq "$D/cache/qemu/capabilities" "$CAPS_SEED" >/dev/null 2>&1 && return 0
    mkdir -p "${CAPS_SEED%/*}"
    tmp=$(mktemp -d "$CAPS_SEED.XXXXXX")
    cp -a "$D/cache/qemu/capabilities/." "$tmp/"
    rm -rf "$CAPS_SEED"
    mv -T "$tmp" "$CAPS_SEED" 2>/dev/null || rm -rf "$tmp"
}

facts() {
    echo "LIBVIRT_URI=$URI"
    echo "NETNS=$NETNS"
    echo "HOST_IP=$IP"
    echo "GATEWAY_IP=$GW"
    echo "INDEX=$INDEX"
    echo "LAB_DIR=$D"
    echo "LIBVIRT_SOCKET=$SOCK"
    echo "MIGRATION_URI=qemu+tcp://$IP/system"
    echo "FORWARDS=$(paste -sd, "$D/forwards" 2>/dev/null || true)"
}

do_up() {
    local t0 p
    t0=$(now_ms)
    if [[ -s $D/index && $(<"$D/index") != "$INDEX" ]]; then
        die "$NAME already exists with INDEX $(<"$D/index") (down it first)"
    fi
    if ip link show "$HOSTIF" >/dev/null 2>&1 && ! ip -n "$NETNS" link show "$PEERIF" >/dev/null 2>&1; then
        conflict "$HOSTIF exists but its peer $PEERIF is not in $NETNS: INDEX $INDEX belongs to another sim host"
    fi
    make_dirs
    seed_etc
    conf_migration
    setup_net
    for p in ${SIM_HOST_FORWARD-5672}; do start_forward "$p"; done
    start_daemons
    wait_until "daemons" record_mntns ||
        die "virtlogd/libvirtd of $NAME did not start (logs: $D/logs/)"
    if ! wait_until "libvirtd" ready; then
        tail -n 20 "$D/logs/virtlogd.log" "$D/logs/libvirtd.log" >&2 || true
        die "libvirtd of $NAME not answering on $SOCK after ${TIMEOUT}s"
    fi
    record_mntns
    save_caps
    if [[ -n ${SIM_HOST_GUEST_NET:-} ]]; then
        # The "mininova" NAT network (deploy/setup-network.sh) on this libvirtd:
        # bridge, dnsmasq and iptables rules all live in the host's netns.
        MININOVA_LIBVIRT_URI=$URI bash "$LAB/../setup-network.sh" >&2 9>&-
    fi
    facts
    log "$NAME up in $(( $(now_ms) - t0 )) ms ($URI, $IP in $NETNS)"
}

do_down() {
    local t0 pid pids dom net f
    t0=$(now_ms)
    if answers; then
        for dom in $(virsh_ list --all --name); do
            virsh_ destroy "$dom" >/dev/null 2>&1 || true
            virsh_ undefine --managed-save --snapshots-metadata --checkpoints-metadata \
                --nvram "$dom" >/dev/null 2>&1 || virsh_ undefine "$dom" >/dev/null 2>&1 || true
        done
        for net in $(virsh_ net-list --name); do virsh_ net-destroy "$net" >/dev/null 2>&1 || true; done
    fi
    pids=()
    pid=$(libvirtd_pid) && pids+=("$pid")
    pid=$(tini_pid) && pids+=("$pid")
    stop_pids "libvirtd of $NAME" "${pids[@]}" || true
    pid=$(virtlogd_pid) && { stop_pids "virtlogd of $NAME" "$pid" || true; }
    # Whatever else still runs in its mount namespace (QEMU, dnsmasq, ...).
    mapfile -t pids < <(mntns_pids)
    stop_pids "processes in the mount namespace of $NAME" "${pids[@]}" || true
    # ... and in its network namespace (agents started there by tests).
    mapfile -t pids < <(netns_pids)
    stop_pids "processes in netns $NETNS" "${pids[@]}" || true
    for f in "$D"/pids/fwd-*.pid; do
        [[ -e $f ]] || continue
        pid=$(pid_of "$f" "tcp-forward.py") && { stop_pids "forwarder" "$pid" || true; }
    done
    if [[ -n ${HOSTIF:-} ]] && ip link show "$HOSTIF" >/dev/null 2>&1 &&
       ip -n "$NETNS" link show "$PEERIF" >/dev/null 2>&1; then
        ip link del "$HOSTIF"
    fi
    [[ -e /run/netns/$NETNS ]] && ip netns del "$NETNS"
    rm -rf --one-file-system "$D"
    log "$NAME down in $(( $(now_ms) - t0 )) ms"
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
do_status() {
    local pid ok=0 what
    [[ -d $D && -n ${INDEX:-} ]] || { echo "STATE=absent"; return 1; }
    facts
    for what in libvirtd virtlogd; do
        if pid=$("${what}_pid"); then
            echo "${what^^}_PID=$pid"
            echo "${what^^}_RSS_KB=$(rss_kb "$pid")"
        else
            ok=1
        fi
    done
    if ((ok == 0)) && answers; then
        echo "DOMAINS=$(virsh_ list --all --name | paste -sd, -)"
        echo "STATE=up"
    else
        echo "STATE=broken"; return 1
    fi
}

do_link() {
    [[ $LINK == up || $LINK == down ]] || usage
    [[ -n ${HOSTIF:-} ]] || die "$NAME is not set up"
    ip link set "$HOSTIF" "$LINK"
}

case $CMD in
up)      do_up ;;
down)    do_down ;;
status)  do_status ;;
forward) [[ -n ${GW:-} && -d $D ]] || die "$NAME is not up"; start_forward "$PORTSPEC"; facts ;;
link)    do_link ;;
esac
