"""Checks that ask libvirt (through nova_compute/virt/libvirt/diagnose, the
only place libvirt is imported): KVM or TCG, the connection as compute's
user, the guests' NAT network."""
import grp

from nova_manage.doctor import fail, ok, userprobe, warn

LIBVIRTD_CONF = "/etc/libvirt/libvirtd.conf"
START_LIBVIRT = "deploy/start-libvirt.sh  (starts virtlogd and libvirtd)"


def _diagnose():
    # Imported here: the controller role must not need libvirt-python.
    from nova_compute.virt.libvirt import diagnose
    return diagnose


def check_kvm(virt_type, cpuinfo_path="/proc/cpuinfo", kvm_device="/dev/kvm"):
    """Whether guests get KVM or run under TCG (emulation, ~10x slower), and why.
    A /dev/kvm alone proves nothing: nested set-ups expose one that cannot run
    guests, so like the driver we go by the CPU's vmx/svm flags."""
    name = "kvm"
    facts = _diagnose().virt_type_facts(virt_type, cpuinfo_path, kvm_device)
    flags, device = facts["cpu_flags"], facts["kvm_device_exists"]
    if not flags:
        why = "%s shows no vmx/svm CPU flag%s" % (
            cpuinfo_path, " (%s exists but cannot run guests: a paravirtual shim or "
            "nested virtualisation switched off)" % kvm_device if device else "")
        hw_fix = ("enable hardware virtualisation for this machine (VT-x/AMD-V in the "
                  "firmware, or nested virtualisation on the hypervisor running it)")
    elif not device:
        why = "%s is missing although the CPU has %s" % (kvm_device, "/".join(flags))
        hw_fix = "modprobe %s" % ("kvm_intel" if "vmx" in flags else "kvm_amd")
    else:
        why = None
    if facts["resolved"] == "kvm" and why:
        return [fail(name, "[libvirt] virt_type = kvm but %s: guests fail to start or hang"
                     % why, "set [libvirt] virt_type = auto (TCG here) or " + hw_fix)]
    if facts["resolved"] == "kvm":
        return [ok(name, "KVM usable (%s, %s); virt_type %s -> kvm"
                   % ("/".join(flags), kvm_device, virt_type))]
    if why:
        return [warn(name, "TCG in use because %s; virt_type %s -> qemu: guests are "
                     "emulated, several times slower" % (why, virt_type), hw_fix)]
    return [warn(name, "TCG in use because [libvirt] virt_type = qemu although KVM is "
                 "usable here (%s, %s)" % ("/".join(flags), kvm_device),
                 "set [libvirt] virt_type = auto")]


def check_libvirt(uri, user):
    """Open ``uri`` as compute's ``user`` would, and say why not."""
    name = "libvirt"
    diagnose = _diagnose()
    try:
        facts = userprobe.run_as(user, diagnose.probe_connection, uri)
    except (userprobe.ProbeError, KeyError) as exc:
        return [fail(name, "cannot probe %s as user %s: %s" % (uri, user, exc),
                     "create the user, or run the doctor with --compute-user USER")]
    if facts["ok"]:
        return [ok(name, "%s reachable by user %s (%s, libvirt %s)"
                   % (uri, user, facts["hypervisor"], facts["version"]))]
    kind, message = facts["kind"], facts["message"]
    sock = facts["socket"] or "the libvirt socket"
    root = user in ("root", "0")
    group_fix = ("usermod -aG libvirt %s && restart mininova-compute (a new group applies "
                 "to processes started after it)" % user)
    if _in_group(user, "libvirt"):
        group_fix = ("%s is in group libvirt already: restart mininova-compute if it started "
                     "before it joined" % user)
    if kind == "permission-denied":
        return [fail(name, "permission denied on %s for user %s" % (sock, user),
                     group_fix + '; if the socket\'s group is not libvirt: unix_sock_group = '
                     '"libvirt", unix_sock_rw_perms = "0770" in %s, restart libvirtd'
                     % LIBVIRTD_CONF)]
    if kind == "auth":
        return [fail(name, "libvirtd refused user %s on %s: %s" % (user, uri, message),
                     ("%s; libvirtd checks non-root users with polkit, which needs the system "
                      "D-Bus and polkitd running; without them set auth_unix_rw = \"none\", "
                      "unix_sock_group = \"libvirt\", unix_sock_rw_perms = \"0770\" in %s and "
                      "restart libvirtd" % (group_fix, LIBVIRTD_CONF)) if not root
                     else "check the access driver/ACLs in %s" % LIBVIRTD_CONF)]
    if kind in ("no-socket", "refused"):
        return [fail(name, "libvirtd is not running: %s (%s)" % (
            "no socket at %s" % sock if kind == "no-socket" else "%s refuses connections "
            "(stale socket)" % sock, uri), START_LIBVIRT)]
    return [fail(name, "cannot connect to %s as user %s: %s" % (uri, user, message),
                 "check [libvirt] connection_uri; " + START_LIBVIRT)]


def _in_group(user, group):
    try:
        return grp.getgrnam(group).gr_gid in userprobe.user_ids(user)[2]
    except KeyError:
        return False


def check_network(uri, name_of_net):
    """The NAT network every VM's NIC joins: defined, active, autostarted."""
    name = "network"
    if not name_of_net:
        return [ok(name, "[compute] network_name is empty: VMs get no NIC")]
    facts = _diagnose().network_facts(uri, name_of_net)
    if facts["error"]:
        return [fail(name, "cannot look up network %s on %s: %s"
                     % (name_of_net, uri, facts["error"]), START_LIBVIRT)]
    virsh = "virsh -c %s" % uri
    setup = "deploy/setup-network.sh%s" % (
        "" if name_of_net == "mininova" else "  (with MININOVA_NET_NAME=%s)" % name_of_net)
    if not facts["exists"]:
        return [fail(name, "network %s ([compute] network_name) is not defined on %s: "
                     "every spawn fails" % (name_of_net, uri), setup)]
    results = []
    if not facts["active"]:
        results.append(fail(name, "network %s is defined but inactive: every spawn fails "
                            "(its bridge is down)" % name_of_net,
                            "%s net-start %s  (or %s)" % (virsh, name_of_net, setup)))
    if not facts["autostart"]:
        results.append(warn(name, "network %s does not autostart: it is down after the next "
                            "libvirtd restart" % name_of_net,
                            "%s net-autostart %s" % (virsh, name_of_net)))
    return results or [ok(name, "network %s active, autostart%s" % (
        name_of_net, ", bridge %s" % facts["bridge"] if facts["bridge"] else ""))]
