#!/usr/bin/env bash
# Make this host a mininova compute host of a controller set up by
# deploy/controller.sh: libvirt + QEMU (install-host.sh, start-libvirt.sh), the
# guests' NAT network (setup-network.sh), the venv, the config, then
# mininova-compute (systemd unit where systemd is PID 1, else a background
# process with a pid file); waits until its service heartbeats as up in the
# controller's API. Idempotent: a second run changes nothing and leaves one
# daemon; a changed config restarts it.
#
# Usage: compute.sh --credentials-file compute-NAME.env [options]      (as root)
#   --credentials-file F  the compute-NAME.env that controller.sh --compute-host NAME
#                         wrote (CONTROLLER, RABBIT_*: this host's own RabbitMQ
#                         account, API_PORT, SERVICE_TOKEN)
#   --controller IP       the controller's address as this host reaches it
#                         (default: CONTROLLER from the file)
#   --host NAME           this host's name in mininova (hostname)
#   --libvirt-uri URI     (qemu:///system, started here if not running; another
#                         URI names a libvirtd that someone else runs)
#   --virt-type T         auto|kvm|qemu (auto: KVM where the CPU has vmx/svm)
#   --network NAME        libvirt NAT network for the guests (mininova; "" for none)
#   --state-dir DIR       state, instances, image cache, logs (/var/lib/mininova);
#                         also holds the config when given (default
#                         /etc/mininova/mininova.conf)
#   --venv DIR            (/opt/mininova/venv; created from this checkout)
#   --no-packages         no apt (fails later if something is missing)
#   --stop                stop this host's compute daemon and exit
set -euo pipefail
PROG=compute.sh
# shellcheck source=deploy/role-common.sh
. "$(dirname "$(realpath "$0")")/role-common.sh"

usage() { sed -n '10,26p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

ENV_FILE='' CONTROLLER='' HOST_NAME=$(hostname) URI=qemu:///system VIRT_TYPE=auto
NETWORK=mininova STATE='' VENV=/opt/mininova/venv PACKAGES=1 STOP=0
while (($#)); do
    case $1 in
    --credentials-file) ENV_FILE=${2:?}; shift ;;
    --controller) CONTROLLER=${2:?}; shift ;;
    --host) HOST_NAME=${2:?}; shift ;;
    --libvirt-uri) URI=${2:?}; shift ;;
    --virt-type) VIRT_TYPE=${2:?}; shift ;;
    --network) NETWORK=${2?}; shift ;;
    --state-dir) STATE=${2:?}; shift ;;
    --venv) VENV=${2:?}; shift ;;
    --no-packages) PACKAGES=0 ;;
    --stop) STOP=1 ;;
    -h|--help) usage ;;
    *) echo "$PROG: unknown option $1" >&2; usage ;;
    esac
    shift
done
resolve_paths
if ((STOP)); then stop_daemon compute; exit 0; fi

[[ -n $ENV_FILE ]] || { echo "$PROG: --credentials-file is required" >&2; usage; }
[[ -r $ENV_FILE ]] || die "cannot read $ENV_FILE (from controller.sh on the controller)"
# Read only the keys we know (the file is data, not a script to run).
declare -A E=()
while IFS='=' read -r key value; do
    [[ $key =~ ^(CONTROLLER|RABBIT_USER|RABBIT_PASSWORD|RABBIT_PORT|RABBIT_VHOST|API_PORT|SERVICE_TOKEN|RABBIT_HOSTS|RABBIT_QUORUM)$ ]] &&
        E[$key]=$value
done < "$ENV_FILE"
for key in CONTROLLER RABBIT_PORT RABBIT_VHOST API_PORT SERVICE_TOKEN; do
    [[ -n ${E[$key]:-} ]] || die "$ENV_FILE has no $key"
done
# Each compute host has its own RabbitMQ account, which may use only its own
# queue (README "Broker accounts"); the controller makes it.
if [[ ${E[RABBIT_USER]:-} != *.compute."$HOST_NAME" || -z ${E[RABBIT_PASSWORD]:-} ]]; then
    die "$ENV_FILE holds no RabbitMQ account of host $HOST_NAME: run controller.sh" \
        "--compute-host $HOST_NAME on the controller and use its compute-$HOST_NAME.env"
fi
CONTROLLER=${CONTROLLER:-${E[CONTROLLER]}}
[[ $CONTROLLER =~ ^[0-9a-fA-F.:]+$ ]] || die "bad --controller '$CONTROLLER' (an IP address)"
[[ $HOST_NAME =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] || die "bad --host '$HOST_NAME'"
[[ $VIRT_TYPE =~ ^(auto|kvm|qemu)$ ]] || die "bad --virt-type '$VIRT_TYPE' (auto, kvm or qemu)"
[[ -z $NETWORK || $NETWORK =~ ^[A-Za-z0-9_.-]+$ ]] || die "bad --network '$NETWORK'"
HOST_PART=$CONTROLLER
[[ $CONTROLLER == *:* ]] && HOST_PART="[$CONTROLLER]"
API_URL=http://$HOST_PART:${E[API_PORT]}

# --- packages, libvirt, guest network ---------------------------------------------
if ((PACKAGES)); then
    bash "$DEPLOY/install-host.sh" >&2
    apt_install python3-dev   # the venv builds libvirt-python
fi
if [[ $URI == qemu:///system ]]; then
    # Under systemd, libvirt's own units run the daemons (start-libvirt.sh then
    # finds libvirtd running and only waits until it answers).
    if have_systemd; then systemctl enable -q --now virtlogd.socket libvirtd.service || true; fi
    bash "$DEPLOY/start-libvirt.sh" >&2
else
    timeout 30 virsh -c "$URI" version >/dev/null || die "libvirt at $URI does not answer"
fi
if [[ -n $NETWORK ]]; then
    MININOVA_LIBVIRT_URI=$URI MININOVA_NET_NAME=$NETWORK bash "$DEPLOY/setup-network.sh" >/dev/null
fi
setup_venv

# Fail early, and say where, when the controller is out of reach.
# shellcheck disable=SC2016  # $1 and $2 expand in the inner bash
port_open() { timeout 5 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null; }
port_open "$CONTROLLER" "${E[RABBIT_PORT]}" ||
    die "RabbitMQ does not answer at $CONTROLLER:${E[RABBIT_PORT]}"
wait_api "$API_URL" 30

# --- config and daemon --------------------------------------------------------------
mkdir -p "$STATE/instances" "$STATE/_base" "$LOGS" "$RUN"
# RABBIT_HOSTS (controller.sh --rabbit-hosts): every broker of the cluster.
BROKERS=${E[RABBIT_HOSTS]:-$HOST_PART}
[[ $BROKERS =~ ^[][0-9a-fA-F.:,]+$ ]] || die "bad RABBIT_HOSTS '$BROKERS' in $ENV_FILE"
TRANSPORT_URL=$(transport_url "${E[RABBIT_USER]}" "${E[RABBIT_PASSWORD]}" "$BROKERS" \
                "${E[RABBIT_PORT]}" "${E[RABBIT_VHOST]}")
changed=0
write_if_changed "$CONF" <<CONF && changed=1 && log "wrote $CONF"
# Written by deploy/compute.sh; a re-run rewrites it.
[DEFAULT]
host = $HOST_NAME
state_path = $STATE
transport_url = $TRANSPORT_URL

[compute]
instances_path = $STATE/instances
image_cache_path = $STATE/_base
image_api_url = $API_URL
image_api_token = ${E[SERVICE_TOKEN]}
network_name = $NETWORK

[libvirt]
connection_uri = $URI
virt_type = $VIRT_TYPE

[oslo_messaging_rabbit]
# RABBIT_QUORUM (controller.sh --rabbit-cluster): as every daemon of the vhost.
rabbit_quorum_queue = $([[ ${E[RABBIT_QUORUM]:-} == 1 ]] && echo true || echo false)
CONF
start_daemon compute "$changed"
wait_service "$API_URL" "${E[SERVICE_TOKEN]}" mininova-compute "$HOST_NAME" 60
log "compute host $HOST_NAME is up at $API_URL (libvirt $URI)"
