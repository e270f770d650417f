#!/usr/bin/env bash
# The whole high-availability layout of issue 16 on this one machine: a
# 3-node RabbitMQ cluster with quorum queues (rabbit-cluster.sh), a
# PostgreSQL cluster of its own (pg-cluster.sh), one broker account per role
# and compute host (deploy/broker-accounts.sh), 3 APIs behind HAProxy
# (ha-apis.sh), 3 schedulers, 2 conductors and compute hosts on the fake
# driver. Nothing of the system's (RabbitMQ on 5672, PostgreSQL on 5432,
# their epmd, cookie, services) is used or touched.
#
# Usage: ha-lab.sh up DIR      makes DIR (reachable by the rabbitmq user, so
#            not under a root-only tmp dir) and everything in it; run again,
#            it starts what is not running and keeps the rest. Prints
#            eval-able facts (also DIR/facts):
#              HA_LAB_URL=http://127.0.0.1:LB  (HAProxy)  HA_LAB_TOKEN=admin token
#              HA_LAB_TRANSPORT_URL=rabbit://...  (the operator's account, every node)
#              HA_LAB_DB_URL=postgresql+psycopg://...  HA_LAB_CONF=DIR/mininova.conf
#              HA_LAB_PIDS="scheduler1=pid ... api1=pid ... haproxy=pid"
#              HA_LAB_RABBIT_DIR, HA_LAB_APIS_DIR (for rabbit-cluster.sh / ha-apis.sh
#              status|kill), HA_LAB_PG_CLUSTER="VERSION NAME"
#        ha-lab.sh status DIR   each piece: running or not; exit 1 unless all run
#        ha-lab.sh down DIR     stops everything up started, removes DIR
# Env: HA_LAB_APIS (3), HA_LAB_SCHEDULERS (3), HA_LAB_CONDUCTORS (2),
#      HA_LAB_COMPUTES (1); PYTHON (the venv's next to this checkout).
set -euo pipefail
PROG=ha-lab.sh
LAB=$(dirname "$(realpath "$0")")
DEPLOY=$(dirname "$LAB")
REPO=$(dirname "$DEPLOY")
die() { echo "$PROG: $*" >&2; exit 1; }
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
[[ -x $PYTHON ]] || PYTHON=python3
APIS=${HA_LAB_APIS:-3} SCHEDULERS=${HA_LAB_SCHEDULERS:-3}
CONDUCTORS=${HA_LAB_CONDUCTORS:-2} COMPUTES=${HA_LAB_COMPUTES:-1}

action=${1:-} dir=${2:-}
[[ -n $action && -n $dir ]] || die "usage: $PROG up|status|down DIR"
dir=$(realpath -m "$dir")
CONF=$dir/mininova.conf RUN=$dir/run LOGS=$dir/logs CREDS=$dir/creds

free_port() {
    "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
fact() { sed -n "s/^$1=//p" "$2" | tr -d '"'; }
manage() { (cd "$REPO" && "$PYTHON" -m nova_manage.cmd --config-file "$CONF" "$@"); }
# Running = exists, not a zombie, and started by this lab (DIR in its command line).
lab_pid() {  # PIDFILE
    local pid s
    [[ -s $1 ]] || return 1
    pid=$(<"$1")
    s=$(sed -n 's/^State:[[:space:]]*\(.\).*/\1/p' "/proc/$pid/status" 2>/dev/null) || return 1
    [[ -n $s && $s != Z ]] || return 1
    tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$dir/" || return 1
    echo "$pid"
}
# The daemons besides the APIs: NAME MODULE [EXTRA_CONF].
daemons() {
    local i
    for ((i = 1; i <= SCHEDULERS; i++)); do echo "scheduler$i scheduler"; done
    for ((i = 1; i <= CONDUCTORS; i++)); do echo "conductor$i conductor"; done
    for ((i = 1; i <= COMPUTES; i++)); do echo "compute$i compute $dir/compute$i.conf"; done
}
# rabbit://U:P@127.0.0.1:P1,U:P@127.0.0.1:P2,.../mininova for account U.
broker_url() {  # USER PASSWORD
    local p url=""
    for p in $(fact RABBIT_CLUSTER_PORTS "$dir/rabbit/facts"); do
        url+="${url:+,}$1:$2@127.0.0.1:$p"
    done
    echo "rabbit://$url/$(fact RABBIT_CLUSTER_VHOST "$dir/rabbit/facts")"
}
account_url() { broker_url "mininova.$1" "$(<"$CREDS/rabbit/mininova.$1")"; }

up_broker() {
    local d
    if [[ -e $dir/rabbit/facts ]]; then
        for d in $(fact RABBIT_CLUSTER_NODE_DIRS "$dir/rabbit/facts"); do
            bash "$LAB/rabbit-node.sh" start "$d"
        done
    else
        rm -rf "$dir/rabbit"   # a half-made cluster of an interrupted up
        bash "$LAB/rabbit-cluster.sh" up "$dir/rabbit" 3 >/dev/null
    fi
    local hosts=()
    for ((i = 1; i <= COMPUTES; i++)); do hosts+=(--compute-host "lab-compute$i"); done
    RABBITMQ_CONF_ENV_FILE=$dir/rabbit/n1/rabbitmq-env.conf \
        bash "$DEPLOY/broker-accounts.sh" --vhost "$(fact RABBIT_CLUSTER_VHOST "$dir/rabbit/facts")" \
        --base mininova --passwords-dir "$CREDS/rabbit" --python "$PYTHON" --quorum "${hosts[@]}"
}

up_database() {
    local name port password
    if [[ ! -e $dir/pg.env ]]; then
        name=mnlab$(head -c4 /dev/urandom | od -An -tx1 | tr -d ' \n') port=$(free_port)
        password=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
        # Written first: down destroys the cluster even if up stops half way.
        printf 'PG_NAME=%s\nPG_PORT=%s\nPG_PASSWORD=%s\n' "$name" "$port" "$password" \
            > "$dir/pg.env.partial"
        bash "$LAB/pg-cluster.sh" create "$name" "$port" >/dev/null
        bash "$LAB/pg-cluster.sh" start "$name"
        printf "CREATE ROLE mininova LOGIN PASSWORD '%s';\nCREATE DATABASE mininova OWNER mininova;\n" \
            "$password" | PGPORT=$port runuser -u postgres -- psql -v ON_ERROR_STOP=1 -qtA -d postgres
        mv "$dir/pg.env.partial" "$dir/pg.env"
    fi
    bash "$LAB/pg-cluster.sh" start "$(fact PG_NAME "$dir/pg.env")"
}

write_config() {
    local lb=$1 i
    (umask 077; cat > "$CONF") <<CONF
# Written by deploy/lab/ha-lab.sh.
[DEFAULT]
host = lab-controller
state_path = $dir
transport_url = $(account_url manage)

[api]
transport_url = $(account_url api)

[database]
connection = postgresql+psycopg://mininova:$(fact PG_PASSWORD "$dir/pg.env")@127.0.0.1:$(fact PG_PORT "$dir/pg.env")/mininova

[scheduler]
transport_url = $(account_url scheduler)
metrics_port = 0

[conductor]
transport_url = $(account_url conductor)
metrics_port = 0

[compute]
compute_driver = fake
heartbeat_interval = 2
network_name =
image_api_url = http://127.0.0.1:$lb
metrics_port = 0

[oslo_messaging_rabbit]
rabbit_quorum_queue = true
CONF
    for ((i = 1; i <= COMPUTES; i++)); do
        (umask 077; cat > "$dir/compute$i.conf") <<CONF
[DEFAULT]
host = lab-compute$i

[compute]
transport_url = $(account_url "compute.lab-compute$i")
instances_path = $dir/compute$i/instances
image_cache_path = $dir/compute$i/_base
CONF
    done
}

credentials() {
    [[ -s $CREDS/admin.token ]] && return
    manage project create admin >/dev/null
    manage quota set admin --instances -1 --cores -1 --ram -1 >/dev/null
    manage user create admin --project admin --role admin >/dev/null
    manage project create service >/dev/null
    manage user create compute --project service >/dev/null
    sed -i "s|^\[compute\]$|[compute]\nimage_api_token = $(manage token create compute)|" "$CONF"
    qemu-img create -q -f qcow2 "$dir/tiny.qcow2" 64M
    manage image add tiny "$dir/tiny.qcow2" >/dev/null
    (umask 077; manage token create admin > "$CREDS/admin.token.partial")
    mv "$CREDS/admin.token.partial" "$CREDS/admin.token"
}

up_apis() {
    local lb=$1 p i
    if [[ -e $dir/apis/facts ]]; then
        p=$(fact HA_HAPROXY_PID "$dir/apis/facts")
        if [[ -e /proc/$p && $(awk '{print $3}' "/proc/$p/stat") != Z ]]; then
            for ((i = 1; i <= APIS; i++)); do bash "$LAB/ha-apis.sh" start "$dir/apis" "$i"; done
            return
        fi
        bash "$LAB/ha-apis.sh" down "$dir/apis"   # HAProxy gone: all again, same port
    fi
    bash "$LAB/ha-apis.sh" up "$dir/apis" "$CONF" "$APIS" "$lb" >/dev/null
}

start_daemons() {
    local name module extra args
    mkdir -p "$RUN" "$LOGS"
    while read -r name module extra; do
        lab_pid "$RUN/$name.pid" >/dev/null && continue
        args=(--config-file "$CONF")
        [[ -n $extra ]] && args+=(--config-file "$extra")
        (cd "$REPO" && exec setsid "$PYTHON" -m "nova_$module.cmd" "${args[@]}" \
            --log-file "$LOGS/$name.log" </dev/null >>"$LOGS/$name.out" 2>&1) &
        echo $! > "$RUN/$name.pid"
    done < <(daemons)
}

wait_computes() {
    local url=$1 token deadline=$((SECONDS + 60))
    token=$(<"$CREDS/admin.token")
    until "$PYTHON" - "$url" "$token" "$COMPUTES" <<'PY'
import json, sys, urllib.request
url, token, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
try:
    req = urllib.request.Request(url + "/v1/services", headers={"X-Auth-Token": token})
    services = json.load(urllib.request.urlopen(req, timeout=5))["services"]
except OSError:
    sys.exit(1)
up = {s["host"] for s in services if s["binary"] == "mininova-compute" and s["state"] == "up"}
sys.exit(0 if len(up) >= n else 1)
PY
    do
        ((SECONDS < deadline)) || die "the compute hosts are not up after 60 s (logs: $LOGS)"
        sleep 0.5
    done
}

facts() {
    local name pids="" i p
    while read -r name _; do pids+="${pids:+ }$name=$(<"$RUN/$name.pid")"; done < <(daemons)
    i=0
    for p in $(fact HA_API_PIDS "$dir/apis/facts"); do pids+=" api$((++i))=$p"; done
    pids+=" haproxy=$(fact HA_HAPROXY_PID "$dir/apis/facts")"
    cat <<FACTS
HA_LAB_URL=$(fact HA_URL "$dir/apis/facts")
HA_LAB_TOKEN=$(<"$CREDS/admin.token")
HA_LAB_TRANSPORT_URL=$(fact RABBIT_CLUSTER_URL "$dir/rabbit/facts")
HA_LAB_DB_URL=$(sed -n 's/^connection = //p' "$CONF")
HA_LAB_CONF=$CONF
HA_LAB_PIDS="$pids"
HA_LAB_RABBIT_DIR=$dir/rabbit
HA_LAB_APIS_DIR=$dir/apis
HA_LAB_PG_CLUSTER="$(find /etc/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n1) $(fact PG_NAME "$dir/pg.env")"
FACTS
}

up() {
    local lb
    if [[ -e $dir ]] && [[ ! -e $dir/.ha-lab ]] && [[ -n $(ls -A "$dir") ]]; then
        die "$dir is not empty and not a lab of $PROG"
    fi
    mkdir -p "$dir" "$CREDS"
    chmod 755 "$dir"
    chmod 700 "$CREDS"
    touch "$dir/.ha-lab"
    up_database
    up_broker
    [[ -s $dir/lb-port ]] || free_port > "$dir/lb-port"
    lb=$(<"$dir/lb-port")
    [[ -e $CONF ]] || write_config "$lb"
    manage db sync >/dev/null
    credentials
    up_apis "$lb"
    start_daemons
    wait_computes "http://127.0.0.1:$lb"
    facts > "$dir/facts.partial"
    mv "$dir/facts.partial" "$dir/facts"
    cat "$dir/facts"
}

status() {
    local name bad=0 pid
    [[ -e $dir/.ha-lab ]] || die "no lab in $dir"
    echo "== RabbitMQ ($dir/rabbit)"
    bash "$LAB/rabbit-cluster.sh" status "$dir/rabbit" | grep -E '^n[0-9]+:' || bad=1
    bash "$LAB/rabbit-cluster.sh" status "$dir/rabbit" | grep -q 'not running' && bad=1
    echo "== PostgreSQL"
    if [[ -e $dir/pg.env ]] && pg_lsclusters -h | awk -v n="$(fact PG_NAME "$dir/pg.env")" \
            '$2 == n {print; if ($4 != "online") exit 1; found = 1} END {exit !found}'; then :; else bad=1; fi
    echo "== APIs behind HAProxy ($(fact HA_URL "$dir/apis/facts" 2>/dev/null))"
    bash "$LAB/ha-apis.sh" status "$dir/apis" | tee "$dir/.api-states" || bad=1
    grep -qv ' UP$' "$dir/.api-states" && bad=1
    rm -f "$dir/.api-states"
    echo "== daemons"
    while read -r name _; do
        if pid=$(lab_pid "$RUN/$name.pid"); then echo "$name running (pid $pid)"
        else echo "$name not running"; bad=1; fi
    done < <(daemons)
    return "$bad"
}

stop_pid() {  # PIDFILE
    local pid
    pid=$(lab_pid "$1") || return 0
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do lab_pid "$1" >/dev/null || return 0; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
}

down() {
    local f
    [[ -e $dir ]] || return 0
    [[ -e $dir/.ha-lab ]] || die "$dir was not made by $PROG up: left alone"
    for f in "$RUN"/*.pid; do [[ -e $f ]] && stop_pid "$f"; done
    bash "$LAB/ha-apis.sh" down "$dir/apis"
    bash "$LAB/rabbit-cluster.sh" down "$dir/rabbit"
    for f in "$dir/pg.env" "$dir/pg.env.partial"; do
        [[ -e $f ]] && bash "$LAB/pg-cluster.sh" destroy "$(fact PG_NAME "$f")"
    done
    rm -rf "$dir"
}

case $action in
up) up ;;
status) status ;;
down) down ;;
*) die "unknown action '$action' (up, status, down)" ;;
esac
