#!/usr/bin/env bash
# Make this host a mininova controller: RabbitMQ (+ management plugin) and
# PostgreSQL with mininova's own credentials, the venv, the config, the schema,
# the accounts, then mininova-api, mininova-scheduler and mininova-conductor (systemd units from
# deploy/systemd/ where systemd is PID 1, else background processes with pid
# files). Writes compute.env: what deploy/compute.sh needs to join a compute
# host. Idempotent: a second run changes nothing and leaves one daemon each; a
# changed config restarts the daemons.
#
# Usage: controller.sh --address IP [options]      (as root)
#   --address IP        the address compute hosts reach this controller at; the
#                       API listens there (and RabbitMQ must be reachable there)
#   --credentials FILE  RabbitMQ/PostgreSQL passwords (/etc/mininova/credentials;
#                       generated when missing, see start-controller-services.sh)
#   --state-dir DIR     state, logs, tokens (/var/lib/mininova); also holds the
#                       config when given (default config /etc/mininova/mininova.conf)
#   --api-port P        (8774)    --api-listen ADDR  (default: the --address)
#   --db-name NAME      (mininova) --vhost NAME (/) --rabbit-user NAME (mininova)
#   --host NAME         this host's name in mininova (hostname)
#   --venv DIR          (/opt/mininova/venv; created from this checkout)
#   --image NAME=PATH   register an image unless one of that name exists (repeatable)
#   --compute-host NAME a compute host to join (repeatable): its own RabbitMQ account
#                       and STATE_DIR/compute-NAME.env, the file its compute.sh takes
#   --compute-env FILE  also copy compute.env there (e.g. a folder the computes see),
#                       and each compute-NAME.env beside it
#   --no-packages       no apt (fails later if something is missing)
#   --no-rabbit-management  leave RabbitMQ's plugins alone
#   --stop              stop this controller's daemons and exit
# One of several controllers (README, "Several APIs behind HAProxy"):
#   --peers IP,IP,...   every controller's address (this one's too): HAProxy here
#                       balances the APIs at PEER:API_PORT, health-checked
#   --lb-port P         where HAProxy listens, at --address (8780); clients,
#                       compute hosts and the rc files then use it
#   --rabbit-hosts IP,IP,...  the brokers of transport_url (a RabbitMQ cluster's
#                       nodes, each at RABBIT_PORT; default: this controller)
#   --rabbit-cluster NAME=IP,NAME=IP,...  the controllers whose RabbitMQ nodes
#                       (rabbit@NAME, NAME their `hostname -s`) form one cluster,
#                       the first the seed: this one's gets the shared cookie and
#                       pause_minority and joins the seed's (rabbit-cluster-member.sh);
#                       names missing from DNS go to /etc/hosts; quorum queues
#                       (rabbit_quorum_queue) for every daemon; --rabbit-hosts
#                       defaults to these addresses
#   --rabbit-cookie FILE  the cluster's Erlang cookie, the same file on every
#                       controller (made by the first run when missing)
#   --broker-passwords DIR  the RabbitMQ accounts' passwords (STATE_DIR/creds/rabbit);
#                       controllers sharing a broker share this directory
#   --db-host IP        the PostgreSQL server (default: this controller's, set
#                       up here; another must accept this controller's login)
#   --db-clients CIDR   let controllers in CIDR log into this controller's
#                       PostgreSQL as mininova's role (listen_addresses '*',
#                       a pg_hba line; restarts PostgreSQL when it must listen anew)
# Prints (last line) the path of compute.env (STATE_DIR/compute.env, 0600).
set -euo pipefail
PROG=controller.sh
# shellcheck source=deploy/role-common.sh
. "$(dirname "$(realpath "$0")")/role-common.sh"

usage() { sed -n '10,52p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

ADDRESS='' CREDS=/etc/mininova/credentials STATE='' API_PORT=8774 API_LISTEN=''
DB_NAME=mininova VHOST=/ RABBIT_USER=mininova HOST_NAME=$(hostname)
VENV=/opt/mininova/venv PACKAGES=1 MANAGEMENT=1 STOP=0 IMAGES=() ENV_COPY='' COMPUTES=()
PEERS='' LB_PORT=8780 RABBIT_HOSTS='' DB_HOST=127.0.0.1 DB_CLIENTS='' ACCOUNTS=''
RABBIT_CLUSTER='' RABBIT_COOKIE=''
while (($#)); do
    case $1 in
    --address) ADDRESS=${2:?}; shift ;;
    --credentials) CREDS=${2:?}; shift ;;
    --state-dir) STATE=${2:?}; shift ;;
    --api-port) API_PORT=${2:?}; shift ;;
    --api-listen) API_LISTEN=${2:?}; shift ;;
    --db-name) DB_NAME=${2:?}; shift ;;
    --vhost) VHOST=${2:?}; shift ;;
    --rabbit-user) RABBIT_USER=${2:?}; shift ;;
    --host) HOST_NAME=${2:?}; shift ;;
    --venv) VENV=${2:?}; shift ;;
    --image) IMAGES+=(--image "${2:?}"); shift ;;
    --compute-env) ENV_COPY=${2:?}; shift ;;
    --compute-host) COMPUTES+=("${2:?}"); shift ;;
    --no-packages) PACKAGES=0 ;;
    --no-rabbit-management) MANAGEMENT=0 ;;
    --stop) STOP=1 ;;
    --peers) PEERS=${2:?}; shift ;;
    --lb-port) LB_PORT=${2:?}; shift ;;
    --rabbit-hosts) RABBIT_HOSTS=${2:?}; shift ;;
    --broker-passwords) ACCOUNTS=${2:?}; shift ;;
    --rabbit-cluster) RABBIT_CLUSTER=${2:?}; shift ;;
    --rabbit-cookie) RABBIT_COOKIE=${2:?}; shift ;;
    --db-host) DB_HOST=${2:?}; shift ;;
    --db-clients) DB_CLIENTS=${2:?}; shift ;;
    -h|--help) usage ;;
    *) echo "$PROG: unknown option $1" >&2; usage ;;
    esac
    shift
done
resolve_paths
CREDS=$(realpath -m "$CREDS")
if ((STOP)); then
    stop_haproxy "$STATE/haproxy.cfg"
    stop_daemon api; stop_daemon scheduler; stop_daemon conductor; exit 0
fi
[[ -n $ADDRESS ]] || { echo "$PROG: --address is required" >&2; usage; }
[[ $ADDRESS =~ ^[0-9a-fA-F.:]+$ ]] || die "bad --address '$ADDRESS' (an IP address)"
if ! [[ $API_PORT =~ ^[0-9]+$ ]] || ((API_PORT < 1 || API_PORT > 65535)); then
    die "bad --api-port '$API_PORT'"
fi
[[ $DB_NAME =~ ^[A-Za-z_][A-Za-z0-9_]{0,62}$ ]] || die "bad --db-name '$DB_NAME' ([A-Za-z0-9_])"
[[ $VHOST == / || $VHOST =~ ^[A-Za-z0-9_.-]+$ ]] || die "bad --vhost '$VHOST' (/ or [A-Za-z0-9_.-])"
[[ $RABBIT_USER =~ ^[A-Za-z0-9_.-]+$ ]] || die "bad --rabbit-user '$RABBIT_USER'"
[[ $HOST_NAME =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] || die "bad --host '$HOST_NAME'"
for name in "${COMPUTES[@]}"; do
    [[ $name =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] || die "bad --compute-host '$name'"
done
ip_list() {  # NAME VALUE: a comma-separated list of IP addresses, or die
    local ip
    [[ -n $2 ]] || die "empty $1"
    for ip in ${2//,/ }; do
        [[ $ip =~ ^[0-9a-fA-F.:]+$ ]] || die "bad $1 '$2' (IP,IP,...)"
    done
}
[[ -z $PEERS ]] || ip_list --peers "$PEERS"
# --rabbit-cluster: NAME=IP pairs; SEED the first name, SELF this controller's.
SEED='' SELF='' QUORUM=0
if [[ -n $RABBIT_CLUSTER ]]; then
    [[ -n $RABBIT_COOKIE ]] || die "--rabbit-cluster needs --rabbit-cookie FILE"
    cluster_ips=''
    for pair in ${RABBIT_CLUSTER//,/ }; do
        [[ $pair =~ ^([A-Za-z0-9][A-Za-z0-9-]*)=([0-9a-fA-F.:]+)$ ]] ||
            die "bad --rabbit-cluster '$RABBIT_CLUSTER' (NAME=IP,NAME=IP,...)"
        SEED=${SEED:-${BASH_REMATCH[1]}}
        [[ ${BASH_REMATCH[2]} == "$ADDRESS" ]] && SELF=${BASH_REMATCH[1]}
        cluster_ips+=${cluster_ips:+,}${BASH_REMATCH[2]}
    done
    [[ -n $SELF ]] || die "--rabbit-cluster '$RABBIT_CLUSTER' must name this controller's --address $ADDRESS"
    RABBIT_HOSTS=${RABBIT_HOSTS:-$cluster_ips} QUORUM=1
elif [[ -n $RABBIT_COOKIE ]]; then
    die "--rabbit-cookie goes with --rabbit-cluster"
fi
[[ -z $RABBIT_HOSTS ]] || ip_list --rabbit-hosts "$RABBIT_HOSTS"
ip_list --db-host "$DB_HOST"
[[ $DB_HOST != *,* ]] || die "--db-host takes one address"
[[ -z $DB_CLIENTS || $DB_CLIENTS =~ ^[0-9a-fA-F.:]+/[0-9]{1,3}$ ]] ||
    die "bad --db-clients '$DB_CLIENTS' (a CIDR, e.g. 192.168.56.0/24)"
if ! [[ $LB_PORT =~ ^[0-9]+$ ]] || ((LB_PORT < 1 || LB_PORT > 65535 || LB_PORT == API_PORT)); then
    die "bad --lb-port '$LB_PORT' (a port other than --api-port)"
fi
if [[ -n $PEERS && ,$PEERS, != *,$ADDRESS,* ]]; then
    die "--peers '$PEERS' must name this controller's --address $ADDRESS too"
fi
API_LISTEN=${API_LISTEN:-$ADDRESS}
url_of() {  # HOST PORT
    if [[ $1 == *:* ]]; then echo "http://[$1]:$2"; else echo "http://$1:$2"; fi
}
API_URL=$(url_of "$ADDRESS" "$API_PORT")
# What clients and compute hosts use: HAProxy's address when there are peers.
PUBLIC_URL=$API_URL
[[ -z $PEERS ]] || PUBLIC_URL=$(url_of "$ADDRESS" "$LB_PORT")

# --- packages and services ------------------------------------------------------
if ((PACKAGES)); then
    # The venv builds libvirt-python (a dependency of the package) from source.
    apt_install python3 python3-venv python3-dev gcc libc6-dev pkg-config libvirt-dev
    [[ -z $PEERS ]] || apt_install haproxy
fi
MGMT=''; ((MANAGEMENT)) && MGMT=1
MININOVA_DB=$DB_NAME MININOVA_CREDENTIALS=$CREDS MININOVA_RABBIT_USER=$RABBIT_USER \
MININOVA_VHOST=$VHOST MININOVA_RABBIT_MANAGEMENT=$MGMT \
    bash "$DEPLOY/start-controller-services.sh" >&2
# shellcheck disable=SC1090
. "$CREDS"   # RABBIT_USER RABBIT_PASSWORD DB_USER DB_PASSWORD, the ports
RABBIT_PORT=${RABBIT_PORT:-5672} DB_PORT=${DB_PORT:-5432}
setup_venv

# The other controllers' mininova-api/-scheduler/-conductor log into this
# controller's PostgreSQL (--db-clients): it listens on every address and
# takes mininova's role, with its password, from that network only.
allow_db_clients() {  # CIDR
    local line hba cluster
    psql_q() { su postgres -c "psql -p $DB_PORT -XAtc \"$1\""; }
    hba=$(psql_q 'SHOW hba_file') || die "cannot ask PostgreSQL for its pg_hba.conf"
    line="host $DB_NAME $DB_USER $1 scram-sha-256"
    if ! grep -qxF "$line" "$hba"; then
        echo "$line" >> "$hba"
        psql_q 'SELECT pg_reload_conf()' >/dev/null
        log "PostgreSQL: $DB_USER may log in from $1 ($hba)"
    fi
    if [[ $(psql_q 'SHOW listen_addresses') != '*' ]]; then
        psql_q "ALTER SYSTEM SET listen_addresses = '*'" >/dev/null
        cluster=$(psql_q 'SHOW cluster_name')   # VERSION/NAME, Debian's
        if have_systemd; then
            systemctl restart "postgresql@${cluster%%/*}-${cluster#*/}.service"
        else
            pg_ctlcluster --skip-systemctl-redirect "${cluster%%/*}" "${cluster#*/}" restart
        fi
        log "PostgreSQL restarted to listen on every address"
    fi
}
[[ -z $DB_CLIENTS ]] || allow_db_clients "$DB_CLIENTS"

# --- this RabbitMQ in the cluster (README "High availability") -------------------
if [[ -n $RABBIT_CLUSTER ]]; then
    # RabbitMQ names its node rabbit@`hostname -s`; the others reach it by that name.
    [[ $SELF == "$(hostname -s)" ]] ||
        die "--rabbit-cluster names $ADDRESS '$SELF', but this host is '$(hostname -s)' (RabbitMQ's node rabbit@$(hostname -s))"
    if [[ ! -s $RABBIT_COOKIE ]]; then
        mkdir -p "$(dirname "$RABBIT_COOKIE")"
        (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$RABBIT_COOKIE")
        log "made the RabbitMQ cluster's cookie $RABBIT_COOKIE"
    fi
    for pair in ${RABBIT_CLUSTER//,/ }; do
        if ! getent hosts "${pair%%=*}" >/dev/null; then
            echo "${pair#*=} ${pair%%=*}" >> /etc/hosts
            log "/etc/hosts: ${pair#*=} ${pair%%=*} (RabbitMQ's nodes reach one another by name)"
        fi
    done
    join=()
    [[ $SELF == "$SEED" ]] || join=(--join "rabbit@$SEED")
    bash "$DEPLOY/rabbit-cluster-member.sh" --cookie "$RABBIT_COOKIE" "${join[@]}" ||
        die "joining RabbitMQ's cluster failed"
fi

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
port_open "$ADDRESS" "$RABBIT_PORT" ||
    log "warning: RabbitMQ does not answer at $ADDRESS:$RABBIT_PORT; compute hosts need it there" \
        "(RabbitMQ's listeners.tcp in /etc/rabbitmq/rabbitmq.conf)"

# --- broker accounts: one per role and per compute host (README "Broker accounts") --
mkdir -p "$STATE" "$LOGS" "$RUN"
ACCOUNTS=${ACCOUNTS:-$STATE/creds/rabbit}
account_args=()
for name in "${COMPUTES[@]}"; do account_args+=(--compute-host "$name"); done
((QUORUM)) && account_args+=(--quorum)
bash "$DEPLOY/broker-accounts.sh" --vhost "$VHOST" --base "$RABBIT_USER" \
    --passwords-dir "$ACCOUNTS" --python "$VENV/bin/python" "${account_args[@]}" ||
    die "creating the RabbitMQ accounts failed"
role_url() {  # ROLE [HOST]: the transport url of account RABBIT_USER.ROLE
    # --rabbit-hosts: every broker, among which the daemons fail over.
    transport_url "$RABBIT_USER.$1" "$(<"$ACCOUNTS/$RABBIT_USER.$1")" "${2:-${RABBIT_HOSTS:-127.0.0.1}}" \
        "$RABBIT_PORT" "$VHOST"
}

# --- config ---------------------------------------------------------------------
changed=0
write_if_changed "$CONF" <<CONF && changed=1 && log "wrote $CONF"
# Written by deploy/controller.sh; a re-run rewrites it.
[DEFAULT]
host = $HOST_NAME
state_path = $STATE
# mininova-manage's account; each daemon has its own below.
transport_url = $(role_url manage)

[api]
listen = $API_LISTEN
port = $API_PORT
transport_url = $(role_url api)

[scheduler]
transport_url = $(role_url scheduler)

[conductor]
transport_url = $(role_url conductor)

[database]
connection = postgresql+psycopg://$DB_USER:$(urlencode "$DB_PASSWORD")@$DB_HOST:$DB_PORT/$DB_NAME

[oslo_messaging_rabbit]
# --rabbit-cluster: quorum queues, replicated on every node.
rabbit_quorum_queue = $( ((QUORUM)) && echo true || echo false)
CONF

"$VENV/bin/python" "$DEPLOY/controller-bootstrap.py" --config-file "$CONF" \
    --state-dir "$STATE" --api-url "$PUBLIC_URL" "${IMAGES[@]}" ||
    die "database bootstrap failed"

# --- daemons --------------------------------------------------------------------
start_daemon api "$changed"
start_daemon scheduler "$changed"
start_daemon conductor "$changed"
wait_api "$API_URL" 60
if [[ -n $PEERS ]]; then
    servers=() i=0
    for peer in ${PEERS//,/ }; do
        i=$((i + 1))
        if [[ $peer == *:* ]]; then servers+=("api$i=[$peer]:$API_PORT")
        else servers+=("api$i=$peer:$API_PORT"); fi
    done
    bind=$ADDRESS:$LB_PORT
    [[ $ADDRESS == *:* ]] && bind="[$ADDRESS]:$LB_PORT"
    haproxy_changed=0
    bash "$DEPLOY/haproxy-cfg.sh" --bind "$bind" --stats-socket "$RUN/haproxy.sock" \
        "${servers[@]}" | write_if_changed "$STATE/haproxy.cfg" && haproxy_changed=1
    start_haproxy "$STATE/haproxy.cfg" "$haproxy_changed"
    wait_api "$PUBLIC_URL" 60
fi
for binary in mininova-scheduler mininova-conductor; do
    wait_service "$API_URL" "$(<"$STATE/creds/admin.token")" "$binary" "$HOST_NAME" 60
done

# --- what a compute host needs ----------------------------------------------------
# compute.env: this controller's address and the service token; compute-NAME.env
# adds host NAME's own RabbitMQ account. Keep them 0600.
compute_env() {  # [HOST]
    cat <<ENV
# For deploy/compute.sh --credentials-file${1:+ on $1 (its own RabbitMQ account)}.
CONTROLLER=$ADDRESS
RABBIT_PORT=$RABBIT_PORT
RABBIT_VHOST=$VHOST
API_PORT=${PUBLIC_URL##*:}
RABBIT_HOSTS=$RABBIT_HOSTS
RABBIT_QUORUM=$QUORUM
IMAGE_API_URL=$PUBLIC_URL
SERVICE_TOKEN=$(<"$STATE/creds/compute.token")
ENV
    if [[ -n ${1:-} ]]; then
        echo "RABBIT_USER=$RABBIT_USER.compute.$1"
        echo "RABBIT_PASSWORD=$(<"$ACCOUNTS/$RABBIT_USER.compute.$1")"
    fi
}
envs=(compute.env)
if compute_env | write_if_changed "$STATE/compute.env"; then log "wrote $STATE/compute.env"; fi
for name in "${COMPUTES[@]}"; do
    envs+=("compute-$name.env")
    if compute_env "$name" | write_if_changed "$STATE/compute-$name.env"; then
        log "wrote $STATE/compute-$name.env"
    fi
done
if [[ -n $ENV_COPY ]]; then
    for env in "${envs[@]}"; do
        copy=$(dirname "$ENV_COPY")/$env
        [[ $env == compute.env ]] && copy=$ENV_COPY
        if write_if_changed "$copy" < "$STATE/$env"; then log "copied $env to $copy"; fi
    done
fi
log "controller $HOST_NAME ready: API $PUBLIC_URL; . $STATE/adminrc or . $STATE/demorc for the CLI"
echo "$STATE/compute.env"
