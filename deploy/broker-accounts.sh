#!/usr/bin/env bash
# Create or update mininova's least-privilege RabbitMQ accounts on one vhost
# (README "Broker accounts"): BASE.api, BASE.scheduler, BASE.conductor,
# BASE.manage and BASE.compute.HOST per compute host, with their permissions,
# topic permissions and the topology they may not declare themselves (the
# exchanges, mininova.dead, the service queues). Each password is generated
# once into PASSWORDS_DIR/USER (0600) and kept; all accounts go to RabbitMQ in
# one `rabbitmqctl import_definitions` with the password hashes on its stdin
# (never a password on a command line). Accounts of hosts not named stay.
#
# Usage: broker-accounts.sh --vhost V --base B --passwords-dir DIR --python PY
#                           [--compute-host H]... [--quorum [--delivery-limit N]]
#   (as root on the broker's machine; RABBITMQ_CONF_ENV_FILE picks another node)
set -euo pipefail
PROG=broker-accounts.sh
die() { echo "$PROG: $*" >&2; exit 1; }

VHOST='' BASE='' DIR='' PY='' HOSTS=() QUORUM=()
while (($#)); do
    case $1 in
    --vhost) VHOST=${2:?}; shift ;;
    --base) BASE=${2:?}; shift ;;
    --passwords-dir) DIR=${2:?}; shift ;;
    --python) PY=${2:?}; shift ;;
    --compute-host) HOSTS+=("${2:?}"); shift ;;
    --quorum) QUORUM+=(--quorum) ;;
    --delivery-limit) QUORUM+=(--delivery-limit "${2:?}"); shift ;;
    *) die "unknown option $1" ;;
    esac
    shift
done
[[ -n $VHOST && -n $DIR && -x $PY ]] || die "--vhost, --passwords-dir and --python are required"
# No dots in the base: the role is what follows it (common/rpc/policy.py).
[[ $BASE =~ ^[A-Za-z0-9_-]+$ ]] || die "bad --base '$BASE' ([A-Za-z0-9_-])"
users=("$BASE.api" "$BASE.scheduler" "$BASE.conductor" "$BASE.manage")
for host in "${HOSTS[@]}"; do
    [[ $host =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] || die "bad --compute-host '$host'"
    users+=("$BASE.compute.$host")
done

mkdir -p "$DIR"
chmod 700 "$DIR"
for user in "${users[@]}"; do
    if [[ ! -s $DIR/$user ]]; then
        (umask 077; head -c 24 /dev/urandom | base64 | tr -dc A-Za-z0-9 > "$DIR/$user")
    fi
done
for user in "${users[@]}"; do
    printf '%s %s\n' "$user" "$(<"$DIR/$user")"
done | "$PY" -m common.rpc.accounts --vhost "$VHOST" "${QUORUM[@]}" |
    rabbitmqctl -q import_definitions >/dev/null ||
    die "importing the accounts into RabbitMQ failed"
