#!/usr/bin/env bash
# Build a tiny bootable guest image (in the spirit of CirrOS) from Debian
# packages, without installing them on the host and without loop devices,
# mounts or privileges beyond apt:
#   - kernel + virtio/evdev/button modules from linux-image-<ver>-cloud-amd64
#   - a static busybox as the whole userland, in a gzip'd initramfs whose /init
#     loads the modules, starts acpid (ACPI power button -> poweroff), prints
#     "MININOVA-GUEST-BOOTED" on the serial console, runs udhcpc on eth0 and
#     prints "MININOVA-GUEST-UP ip=A.B.C.D" once it has a lease; then it idles
#     with a root shell on the console (ttyS0); with "mininova_tick": "N" in the
#     config drive's metadata, "MININOVA-TICK boot=<boot id> up=<uptime>" every
#     N seconds (continuity across a live migration)
#   - an OpenStack config drive, when there is one (a CD-ROM or disk labelled
#     config-2; tiny-image/config-drive.sh): the host name from meta_data.json,
#     its public_keys for root in dropbear (SSH, keys only; Debian's dropbear-bin
#     with its libraries), a static address from network_data.json instead of
#     DHCP when it gives one, and user_data run if it is a script (#!), its
#     output on the console, then "MININOVA-USERDATA-DONE rc=N"
#   - a 64 MiB raw disk: syslinux MBR + one bootable FAT16 partition at sector
#     2048 holding vmlinuz, initrd.zst, syslinux.cfg and ldlinux; converted to a
#     compressed qcow2 (~12 MB).
# Kernel command line options understood by /init: hostname=NAME.
#
# Usage: build-tiny-image.sh OUTPUT_QCOW2
# Cached: nothing is done when OUTPUT exists and OUTPUT.recipe holds the
# sha256 of this script and of tiny-image/* (what the image is made from) and
# OUTPUT's own size, mtime and inode (so an image another version of this
# script put there is never taken for ours); FORCE=1 rebuilds. Built in a temporary directory next to OUTPUT and renamed
# into place atomically; concurrent builders serialise on OUTPUT.lock.
set -euo pipefail

usage() { echo "usage: $0 OUTPUT_QCOW2" >&2; exit 2; }
[[ $# -eq 1 && -n $1 ]] || usage
OUT=$(realpath -m "$1")
SELF=$(realpath "${BASH_SOURCE[0]}")
log() { echo "build-tiny-image.sh: $*" >&2; }

GUEST_FILES=${SELF%/*}/tiny-image
recipe() { cat "$SELF" "$GUEST_FILES"/* | sha256sum | cut -d' ' -f1; }
RECIPE=$(recipe)
stamp() { echo "$RECIPE $(stat -c '%s %.9Y %i' "$OUT" 2>/dev/null)"; }
fresh() { [[ -s $OUT && -z ${FORCE:-} && $(cat "$OUT.recipe" 2>/dev/null) == "$(stamp)" ]]; }
if fresh; then
    log "$OUT is up to date"
    exit 0
fi

mkdir -p "${OUT%/*}"
exec 9>"$OUT.lock"
flock 9
if fresh; then   # another builder finished while we waited for the lock
    log "$OUT is up to date"
    exit 0
fi
t_start=$SECONDS

export DEBIAN_FRONTEND=noninteractive
APT_INSTALL=(apt-get install -y -q --no-install-recommends
             -o Dpkg::Options::=--force-confold -o Dpkg::Options::=--force-confdef)
apt_updated=0
apt_update() { ((apt_updated)) || { apt-get update -q >&2; apt_updated=1; }; }

installed() { dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null | grep -qx installed; }
need_pkgs() {  # install whichever of "$@" is missing (no apt call when none is)
    local p todo=()
    for p in "$@"; do installed "$p" || todo+=("$p"); done
    ((${#todo[@]})) || return 0
    [[ $(id -u) -eq 0 ]] || { log "missing packages ${todo[*]} (run as root to install them)"; exit 1; }
    apt_update
    log "installing ${todo[*]}"
    "${APT_INSTALL[@]}" "${todo[@]}" >&2
}
# sfdisk is in package fdisk; qemu-img in qemu-utils.
need_pkgs dosfstools mtools syslinux syslinux-common cpio fdisk qemu-utils gzip zstd

WORK=$(mktemp -d "${OUT%/*}/.tiny-build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
chmod 755 "$WORK"   # apt-get download runs as _apt, which must reach debs/
cd "$WORK"

# --- 1. fetch the kernel and busybox packages (downloaded, not installed) ------
# The metapackage only depends on the versioned package that holds the files.
kernel_pkg() {  # prints nothing (and succeeds) when the lists do not know it
    local deps
    deps=$(apt-cache depends --no-recommends --no-suggests --no-conflicts --no-breaks \
           --no-replaces --no-enhances linux-image-cloud-amd64 2>/dev/null) || true
    awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ {print $2; exit}' <<<"$deps"
}
KPKG=${MININOVA_TINY_KERNEL_PKG:-$(kernel_pkg)}
if [[ -z $KPKG ]]; then apt_update; KPKG=$(kernel_pkg); fi
[[ -n $KPKG ]] || { log "cannot resolve linux-image-cloud-amd64 to a kernel package"; exit 1; }

mkdir debs
# apt drops privileges to _apt for downloads; it must be able to write here
# (otherwise: "Download is performed unsandboxed as root" warning).
chown _apt debs 2>/dev/null || true
# dropbear-bin and the libraries it links (with the loader: copied, not
# installed), so that the guest's userland is all from one Debian release.
GUEST_DEBS=(busybox-static dropbear-bin libtomcrypt1 libtommath1 libgmp10 zlib1g libcrypt1 libc6)
download() { (cd debs && apt-get download -q "$KPKG" "${GUEST_DEBS[@]}" >&2); }
# Stale package lists point at versions the mirror no longer has: update once.
if ! download; then apt_update; KPKG=${MININOVA_TINY_KERNEL_PKG:-$(kernel_pkg)}; download; fi
log "using $KPKG and ${GUEST_DEBS[*]}"
mkdir pkgroot
for deb in debs/*.deb; do dpkg-deb -x "$deb" pkgroot; done

KVER=$(ls pkgroot/lib/modules)
[[ -n $KVER && -f pkgroot/boot/vmlinuz-$KVER ]] || { log "no kernel found in $KPKG"; exit 1; }
BUSYBOX=pkgroot/bin/busybox
[[ -x $BUSYBOX ]] || { log "no busybox in busybox-static"; exit 1; }

# --- 2. initramfs --------------------------------------------------------------
# Dependency order (no modprobe/depmod in the guest: plain insmod). The IDE
# CD-ROM stack (config drive) ends with ata_piix: loading a module waits for
# the probes it started, so once it is in, /dev/sr0 exists if the VM has one.
MODULES=(virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci
         failover net_failover virtio_net virtio_blk evdev button
         scsi_common scsi_mod cdrom sr_mod isofs libata ata_piix)
R=initramfs
mkdir -p $R/{bin,sbin,usr/bin,usr/sbin,etc/acpi/PWRF,etc/udhcpc,usr/share/udhcpc,lib/modules,proc,sys,dev,run,tmp,var/log,root}
cp "$BUSYBOX" $R/bin/busybox
ln -s busybox $R/bin/sh

# dropbear and the shared libraries the packages' own loader resolves for it
# from the downloaded packages (never from the host: checked).
LOADER=pkgroot/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
mkdir -p $R/lib64 $R/lib/x86_64-linux-gnu $R/etc/dropbear $R/lib/mininova
cp pkgroot/usr/sbin/dropbear $R/usr/sbin/dropbear
cp "$LOADER" $R/lib64/ld-linux-x86-64.so.2
libs=$(env -i "$LOADER" --inhibit-cache \
       --library-path "$PWD/pkgroot/lib/x86_64-linux-gnu:$PWD/pkgroot/usr/lib/x86_64-linux-gnu" \
       --list pkgroot/usr/sbin/dropbear)
while read -r soname arrow path _; do
    [[ $arrow == "=>" && $soname != /* ]] || continue   # not vdso, not the loader
    [[ $path == "$PWD/pkgroot/"* ]] || { log "dropbear needs $soname, not in ${GUEST_DEBS[*]}: $path"; exit 1; }
    cp -L "$path" "$R/lib/x86_64-linux-gnu/$soname"
done <<<"$libs"
cp "$GUEST_FILES/config-drive.sh" "$GUEST_FILES/json-flat.awk" $R/lib/mininova/

for m in "${MODULES[@]}"; do
    f=$(find "pkgroot/lib/modules/$KVER/kernel" \( -name "$m.ko" -o -name "$m.ko.xz" \
             -o -name "$m.ko.zst" -o -name "$m.ko.gz" \) -print -quit)
    [[ -n $f ]] || { log "module $m not found in $KPKG"; exit 1; }
    case $f in   # busybox insmod cannot load compressed modules
    *.xz)  need_pkgs xz-utils; xz -dc "$f" ;;
    *.zst) need_pkgs zstd; zstd -qdc "$f" ;;
    *.gz)  gzip -dc "$f" ;;
    *)     cat "$f" ;;
    esac > "$R/lib/modules/$m.ko"
    echo "$m" >> $R/etc/modules
done

cat > $R/init <<'INIT'
#!/bin/sh
# mininova tiny guest: everything runs from this initramfs.
/bin/busybox --install -s
export PATH=/sbin:/bin:/usr/sbin:/usr/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=0755 tmpfs /run

for m in $(cat /etc/modules); do
    insmod "/lib/modules/$m.ko" || echo "init: insmod $m failed"
done

# An OpenStack config drive, if there is one (sets CD; see config-drive.sh).
. /lib/mininova/config-drive.sh
cd_mount || echo "init: no config drive"

# hostname=NAME on the kernel command line (direct kernel boot), else the
# config drive's, else "mininova" (a DHCP-provided host name replaces the
# default, see default.script).
HN=
for arg in $(cat /proc/cmdline); do
    case $arg in hostname=*) HN=${arg#hostname=} ;; esac
done
[ -n "$HN" ] || HN=$(cd_hostname)
hostname "${HN:-mininova}"
hostname > /etc/hostname
cd_install_keys

# ACPI power button (virsh shutdown) -> /etc/acpi/PWRF/00000080 -> poweroff -f.
# busybox acpid opens /dev/input/event0, 1, ... once at start: wait for them.
i=0
while [ ! -e /dev/input/event0 ] && [ $i -lt 50 ]; do usleep 100000; i=$((i + 1)); done
acpid -l /dev/console || echo "init: acpid failed to start"

echo "mininova: hostname $(hostname), kernel $(uname -r), $(cut -d' ' -f1 /proc/uptime) s since kernel start"
echo "MININOVA-GUEST-BOOTED"

# A heartbeat when the config drive's metadata asks for one ("mininova_tick":
# seconds between two lines): this boot's id and the uptime, so that a reader
# tells a guest that kept running (a live migration) from one that booted again.
tick=$(cd_get meta_data meta.mininova_tick 2>/dev/null) || tick=
case $tick in ''|*[!0-9]*|0) ;; *)
    boot=$(cat /proc/sys/kernel/random/boot_id)
    while :; do
        echo "MININOVA-TICK boot=$boot up=$(cut -d' ' -f1 /proc/uptime)"
        sleep "$tick"
    done &
esac

ip link set lo up
if [ -e /sys/class/net/eth0 ]; then
    ip link set eth0 up
    # Until virtio_net reports carrier the device sits on the noop qdisc and
    # drops what udhcpc sends (each lost discover costs -T seconds).
    i=0
    while [ "$(cat /sys/class/net/eth0/carrier 2>/dev/null)" != 1 ] && [ $i -lt 50 ]; do
        usleep 20000; i=$((i + 1))
    done
    # A static address from the config drive, else DHCP: the bound event
    # prints "MININOVA-GUEST-UP ip=..."; udhcpc keeps running in the background
    # to renew the lease (or to keep trying if it got none).
    cd_static_network eth0 ||
    udhcpc -i eth0 -s /usr/share/udhcpc/default.script -p /run/udhcpc.eth0.pid \
        -t 20 -T 1 -A 5 -b ${HN:+-x hostname:$HN}
else
    echo "init: no eth0, no network"
fi
cd_start_sshd
cd_run_user_data &

# Idle: a root shell on the console for whoever attaches (virsh console).
echo "mininova tiny guest: root shell on $(readlink /proc/self/fd/0 2>/dev/null || echo console)"
while :; do
    setsid cttyhack sh -l
    sleep 1
done
INIT
chmod 755 $R/init

cat > $R/usr/share/udhcpc/default.script <<'SCRIPT'
#!/bin/sh
# busybox udhcpc event script: $1 = deconfig|bound|renew|leasefail|nak
case $1 in
deconfig)
    ip -4 addr flush dev "$interface"
    ip link set "$interface" up
    ;;
bound|renew)
    old=$(ip -4 -o addr show dev "$interface" | awk '{print $4; exit}')
    new=$ip/${mask:-24}
    if [ "$old" != "$new" ]; then
        ip -4 addr flush dev "$interface"
        ip addr add "$new" ${broadcast:+broadcast $broadcast} dev "$interface"
    fi
    if [ -n "$router" ]; then
        while ip route del default dev "$interface" 2>/dev/null; do :; done
        for r in $router; do ip route add default via "$r" dev "$interface"; break; done
    fi
    : > /etc/resolv.conf
    [ -n "$domain" ] && echo "search $domain" >> /etc/resolv.conf
    for d in $dns; do echo "nameserver $d" >> /etc/resolv.conf; done
    if [ -n "$hostname" ] && [ "$(hostname)" = mininova ]; then hostname "$hostname"; fi
    if [ "$1" = bound ]; then
        echo "mininova: lease $ip/${mask:-?} on $interface, $(cut -d' ' -f1 /proc/uptime) s since kernel start"
        echo "MININOVA-GUEST-UP ip=$ip"
    fi > /dev/console
    ;;
leasefail|nak)
    echo "udhcpc: $1 on $interface" > /dev/console
    ;;
esac
exit 0
SCRIPT
chmod 755 $R/usr/share/udhcpc/default.script
ln -s ../../usr/share/udhcpc/default.script $R/etc/udhcpc/default.script

cat > $R/etc/acpi/PWRF/00000080 <<'ACPI'
#!/bin/sh
echo "MININOVA-GUEST-POWEROFF (ACPI power button)" > /dev/console
poweroff -f
ACPI
chmod 755 $R/etc/acpi/PWRF/00000080

cat > $R/etc/profile <<'PROFILE'
export PATH=/sbin:/bin:/usr/sbin:/usr/bin HOME=/root
PS1='\h:\w# '
PROFILE
echo 'root:x:0:0:root:/root:/bin/sh' > $R/etc/passwd
echo 'root:x:0:' > $R/etc/group
echo /bin/sh > $R/etc/shells
printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n' > $R/etc/nsswitch.conf
echo "mininova tiny image, kernel $KVER" > $R/etc/mininova-release
# The kernel's built-in initramfs normally provides /dev/console; add it anyway
# when we can (root), /init also re-opens it after mounting devtmpfs.
mknod -m 600 $R/dev/console c 5 1 2>/dev/null || true

(cd $R && find . -print0 | LC_ALL=C sort -z |
    cpio --null -o -H newc -R 0:0 --quiet) | zstd -q -19 > initrd.zst
cp "pkgroot/boot/vmlinuz-$KVER" vmlinuz

# --- 3. disk: MBR + bootable FAT16 partition at sector 2048, syslinux ----------
cat > syslinux.cfg <<'CFG'
SERIAL 0 115200
PROMPT 0
TIMEOUT 1
DEFAULT linux
LABEL linux
    KERNEL /vmlinuz
    APPEND initrd=/initrd.zst console=ttyS0,115200 quiet
CFG

DISK_MB=64
START=2048                              # sectors of 512 bytes
OFFSET=$((START * 512))
truncate -s ${DISK_MB}M disk.raw
printf 'label: dos\nunit: sectors\n\nstart=%d, type=6, bootable\n' $START |
    sfdisk -q --no-reread --no-tell-kernel disk.raw >&2
dd if=/usr/lib/syslinux/mbr/mbr.bin of=disk.raw bs=440 count=1 conv=notrunc status=none
# mkfs.fat takes the size in KiB; hidden sectors = partition start.
mkfs.fat -F 16 -n MININOVA -h $START --offset $START disk.raw $(((DISK_MB * 1024) - OFFSET / 1024)) >/dev/null
export MTOOLS_SKIP_CHECK=1
mcopy -i "disk.raw@@$OFFSET" vmlinuz initrd.zst syslinux.cfg ::/
syslinux --install --offset $OFFSET disk.raw
mdir -a -b -i "disk.raw@@$OFFSET" ::/ > listing   # -a: ldlinux.sys is hidden
grep -qi '/ldlinux.sys$' listing || { log "syslinux did not install"; exit 1; }

qemu-img convert -c -f raw -O qcow2 disk.raw image.qcow2
mv -f image.qcow2 "$OUT"
stamp > "$OUT.recipe"
log "built $OUT ($(du -h "$OUT" | cut -f1) on disk; kernel $KVER $(du -h vmlinuz | cut -f1), initrd $(du -h initrd.zst | cut -f1)) in $((SECONDS - t_start)) s"
