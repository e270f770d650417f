"""Facts about a host's libvirt for ``mininova-manage doctor``.

Plain data out (dicts of str/bool/int), no advice: the doctor
(``common/doctor``) turns facts into findings and fixes. This module exists so
that libvirt stays imported under ``nova_compute/virt`` only.

Each function opens its own connection and closes it: the doctor may call
``probe_connection`` in a child process running as another user.
"""
import os
import re

import libvirt

from nova_compute.virt.libvirt import host as vhost

# libvirt's "Failed to connect socket to '<path>': <strerror>"
_SOCKET_RE = re.compile(r"connect socket to '([^']+)'")
_AUTH_CODES = {libvirt.VIR_ERR_AUTH_FAILED, libvirt.VIR_ERR_AUTH_CANCELLED,
               getattr(libvirt, "VIR_ERR_AUTH_UNAVAILABLE", -1),
               libvirt.VIR_ERR_ACCESS_DENIED}


def classify_connect_error(code, message):
    """What kind of failure a libvirt.open error is: ``permission-denied``
    (the socket's mode/group), ``no-socket`` (libvirtd not running),
    ``refused`` (a stale socket), ``auth`` (polkit/SASL/ACL said no) or
    ``other``."""
    text = message or ""
    if "Permission denied" in text:
        return "permission-denied"
    if "No such file or directory" in text and "socket" in text:
        return "no-socket"
    if "Connection refused" in text:
        return "refused"
    if code in _AUTH_CODES or "polkit" in text.lower() or "system bus" in text \
            or "authentication" in text.lower():
        return "auth"
    return "other"


def probe_connection(uri):
    """Open ``uri`` read-write as compute does. Returns ``{"ok": bool, "uri",
    "kind", "message", "socket", "version", "hypervisor"}``."""
    facts = {"ok": False, "uri": uri, "kind": None, "message": None, "socket": None,
             "version": None, "hypervisor": None}
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError as exc:
        message = str(exc)
        found = _SOCKET_RE.search(message)
        facts.update(kind=classify_connect_error(exc.get_error_code(), message),
                     message=message, socket=found.group(1) if found else None)
        return facts
    try:
        facts.update(ok=True, kind="ok", hypervisor=conn.getType(),
                     version=_version_text(conn.getLibVersion()))
    finally:
        conn.close()
    return facts


def network_facts(uri, name):
    """``{"exists", "active", "autostart", "bridge", "error"}`` of network
    ``name``; ``error`` is set when libvirt could not be asked at all."""
    facts = {"name": name, "exists": False, "active": False, "autostart": False,
             "bridge": None, "error": None}
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError as exc:
        facts["error"] = str(exc)
        return facts
    try:
        try:
            net = conn.networkLookupByName(name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_NETWORK:
                facts["error"] = str(exc)
            return facts
        facts["exists"] = True
        facts["active"] = net.isActive() == 1
        facts["autostart"] = net.autostart() == 1
        try:
            facts["bridge"] = net.bridgeName()
        except libvirt.libvirtError:
            pass  # drivers without bridges (test://) or an inactive network
    finally:
        conn.close()
    return facts


def virt_type_facts(configured, cpuinfo_path="/proc/cpuinfo", kvm_device="/dev/kvm"):
    """What ``[libvirt] virt_type`` resolves to here (the driver's own
    ``detect_virt_type``) and the evidence: CPU flags and the KVM device."""
    flags = vhost.cpu_flags(cpuinfo_path)
    return {"configured": configured,
            "resolved": vhost.detect_virt_type(configured, cpuinfo_path, kvm_device),
            "cpu_flags": sorted(flags & {"vmx", "svm"}),
            "cpuinfo_readable": os.access(cpuinfo_path, os.R_OK),
            "kvm_device": kvm_device,
            "kvm_device_exists": os.path.exists(kvm_device)}


def _version_text(number):
    return "%d.%d.%d" % (number // 1000000, number // 1000 % 1000, number % 1000)
