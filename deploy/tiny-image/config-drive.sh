#!/bin/sh
# shellcheck shell=dash
# The tiny guest's reader of an OpenStack config drive (ISO 9660 or any block
# device labelled "config-2", as Nova writes it), sourced by /init (busybox sh):
#   cd_mount              find and mount it read-only on /mnt/config; sets CD
#                         to its openstack/latest directory (empty: none found)
#   cd_hostname           print meta_data.json's host name (short form)
#   cd_install_keys       public_keys -> /root/.ssh/authorized_keys
#   cd_static_network IF  configure IF from network_data.json when it gives
#                         IF's MAC a static IPv4 address; fails (so /init runs
#                         DHCP) for ipv4_dhcp, no entry, or no config drive
#   cd_start_sshd         dropbear on port 22, public-key logins only
#   cd_run_user_data      run user_data if it is a script (#!), output on the
#                         console and in /var/log/user-data.log, then
#                         "MININOVA-USERDATA-DONE rc=N"
# JSON is read with json-flat.awk: "path<TAB>value" lines, values with escapes
# that printf '%b' decodes.
CD=
CD_FLAT=/run/config-drive

# The volume id of an ISO 9660 image: 32 bytes at 32808 (primary volume
# descriptor at 32 KiB, id at +40), space padded.
cd_label() {
    dd if="$1" bs=1 skip=32808 count=32 2>/dev/null | tr -d ' \000'
}

cd_mount() {
    local dev name
    for dev in /sys/class/block/*; do
        name=${dev##*/}
        if [ ! -b "/dev/$name" ] || [ "$(cd_label "/dev/$name")" != config-2 ]; then
            continue
        fi
        mkdir -p /mnt/config "$CD_FLAT"
        if ! mount -t iso9660 -o ro "/dev/$name" /mnt/config; then
            echo "config drive: /dev/$name is labelled config-2 but does not mount"
            continue
        fi
        CD=/mnt/config/openstack/latest
        if [ ! -f "$CD/meta_data.json" ]; then
            echo "config drive: /dev/$name has no openstack/latest/meta_data.json"
            umount /mnt/config
            CD=
            continue
        fi
        for f in meta_data network_data; do
            [ -f "$CD/$f.json" ] || continue
            awk -f /lib/mininova/json-flat.awk "$CD/$f.json" > "$CD_FLAT/$f" ||
                echo "config drive: $f.json is not valid JSON, ignored"
        done
        # Nova's random_seed: mixed into the pool (not credited) before
        # dropbear makes its host key.
        cd_get meta_data random_seed | base64 -d > /dev/urandom 2>/dev/null
        echo "config drive: /dev/$name on /mnt/config"
        return 0
    done
    return 1
}

# cd_get FILE PATH: the decoded value at PATH of FILE (meta_data|network_data).
cd_get() {
    local v
    [ -f "$CD_FLAT/$1" ] || return 1
    v=$(awk -F '\t' -v k="$2" '$1 == k { print substr($0, length(k) + 2); found = 1; exit }
                              END { exit !found }' "$CD_FLAT/$1") || return 1
    printf '%b' "$v"
}

cd_hostname() {
    local h
    h=$(cd_get meta_data hostname) || return 0
    h=${h%%.*}   # short name, as cloud-init sets it
    case $h in *[!A-Za-z0-9-]*|-*|'') return 0 ;; esac
    echo "$h"
}

cd_install_keys() {
    local n=0 v
    [ -f "$CD_FLAT/meta_data" ] || return 0
    mkdir -p /root/.ssh
    chmod 700 /root /root/.ssh
    : > /root/.ssh/authorized_keys
    # shellcheck disable=SC2034 # path is only read to skip it
    while IFS="$(printf '\t')" read -r path v; do
        printf '%b\n' "$v" >> /root/.ssh/authorized_keys
        n=$((n + 1))
    done <<KEYS
$(grep '^public_keys\.' "$CD_FLAT/meta_data")
KEYS
    chmod 600 /root/.ssh/authorized_keys
    echo "config drive: $n public key(s) for root"
}

# The network_data.json entry of interface $1 (by MAC): prints "networks.N".
cd_network_of() {
    local mac i=0 link j=0
    mac=$(tr 'A-F' 'a-f' < "/sys/class/net/$1/address")
    while link=$(cd_get network_data "links.$i.id"); do
        if [ "$(cd_get network_data "links.$i.ethernet_mac_address" | tr 'A-F' 'a-f')" = "$mac" ]; then
            while cd_get network_data "networks.$j.id" >/dev/null; do
                if [ "$(cd_get network_data "networks.$j.link")" = "$link" ]; then
                    echo "networks.$j"
                    return 0
                fi
                j=$((j + 1))
            done
            return 1
        fi
        i=$((i + 1))
    done
    return 1
}

cd_static_network() {
    local net ip mask prefix gw k where dns=
    net=$(cd_network_of "$1") || return 1
    [ "$(cd_get network_data "$net.type")" = ipv4 ] || return 1
    ip=$(cd_get network_data "$net.ip_address") || return 1
    mask=$(cd_get network_data "$net.netmask") || return 1
    prefix=$(ipcalc -p "$ip" "$mask") || return 1
    prefix=${prefix#PREFIX=}
    ip -4 addr flush dev "$1"
    ip addr add "$ip/$prefix" dev "$1" || return 1
    # Unsolicited ARP: neighbours that knew this address at another MAC (a
    # deleted VM's) learn the new one now, not after their entry goes stale.
    arping -q -U -c 1 -I "$1" "$ip" >/dev/null 2>&1 &
    k=0
    while cd_get network_data "$net.routes.$k.network" >/dev/null; do
        if [ "$(cd_get network_data "$net.routes.$k.network")" = 0.0.0.0 ]; then
            gw=$(cd_get network_data "$net.routes.$k.gateway") &&
                ip route add default via "$gw" dev "$1"
        fi
        k=$((k + 1))
    done
    # DNS: the network's own services, else the top-level ones.
    for where in "$net.services" services; do
        k=0
        while cd_get network_data "$where.$k.type" >/dev/null; do
            [ "$(cd_get network_data "$where.$k.type")" = dns ] &&
                dns="$dns $(cd_get network_data "$where.$k.address")"
            k=$((k + 1))
        done
        [ -n "$dns" ] && break
    done
    : > /etc/resolv.conf
    for k in $dns; do echo "nameserver $k" >> /etc/resolv.conf; done
    echo "mininova: static $ip/$prefix on $1 from the config drive${gw:+, gateway $gw}," \
         "$(cut -d' ' -f1 /proc/uptime) s since kernel start"
    echo "MININOVA-GUEST-UP ip=$ip"
}

cd_start_sshd() {
    [ -x /usr/sbin/dropbear ] || { echo "init: no dropbear, no SSH"; return 0; }
    mkdir -p /etc/dropbear /var/log
    # -R: host keys made at the first connection; -s: keys only, no passwords.
    if dropbear -R -s -E -P /run/dropbear.pid -p 22 2>>/var/log/dropbear.log; then
        echo "mininova: dropbear listening on port 22"
    else
        echo "init: dropbear failed to start"
    fi
}

cd_run_user_data() {
    local rc
    [ -n "$CD" ] && [ -f "$CD/user_data" ] || return 0
    if [ "$(head -c 2 "$CD/user_data")" != '#!' ]; then
        echo "config drive: user_data is not a script (no #!), not run"
        return 0
    fi
    cp "$CD/user_data" /run/user-data
    chmod 700 /run/user-data
    echo "mininova: running user_data"
    (cd /root && /run/user-data < /dev/null > /var/log/user-data.log 2>&1)
    rc=$?
    sed 's/^/user_data: /' /var/log/user-data.log
    echo "MININOVA-USERDATA-DONE rc=$rc"
}
