"""The libvirt (QEMU/KVM) compute driver."""
