#!/usr/bin/env bash
# Smoke test of the host set up by install-host.sh + start-libvirt.sh: boot a
# tiny TCG domain on a qcow2 copy-on-write overlay, check it runs, tear it down.
set -euo pipefail

URI=qemu:///system
NAME=mininova-smoke-$$
DIR=$(mktemp -d /var/lib/libvirt/images/mininova-smoke.XXXXXX)
cleanup() {
    virsh -c "$URI" destroy "$NAME" >/dev/null 2>&1 || true
    virsh -c "$URI" undefine "$NAME" >/dev/null 2>&1 || true
    rm -rf "$DIR" "/var/log/libvirt/qemu/$NAME.log"
}
trap cleanup EXIT

# KVM only where the CPU advertises it; /dev/kvm alone is not enough (kvm domains hang).
virt=qemu
grep -qwE 'vmx|svm' /proc/cpuinfo && [[ -w /dev/kvm ]] && virt=kvm

qemu-img create -q -f qcow2 "$DIR/base.qcow2" 1G
qemu-img create -q -f qcow2 -F qcow2 -b "$DIR/base.qcow2" "$DIR/overlay.qcow2"

cat > "$DIR/domain.xml" <<XML
<domain type='$virt'>
  <name>$NAME</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type><boot dev='hd'/></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='$DIR/overlay.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
  </devices>
</domain>
XML

t0=${EPOCHREALTIME/./}   # microseconds (bash 5)
virsh -c "$URI" define "$DIR/domain.xml" >/dev/null
virsh -c "$URI" start "$NAME" >/dev/null
state=$(virsh -c "$URI" domstate "$NAME")
t1=${EPOCHREALTIME/./}
[[ $state == running ]] || { echo "smoke-domain.sh: state is '$state', expected running" >&2; exit 1; }
echo "smoke-domain.sh: $virt domain running, define+start took $(( (t1 - t0) / 1000 )) ms"

virsh -c "$URI" destroy "$NAME" >/dev/null
virsh -c "$URI" undefine "$NAME" >/dev/null
echo "smoke-domain.sh: OK"
