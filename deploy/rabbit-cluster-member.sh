#!/usr/bin/env bash
# Make this host's RabbitMQ a member of a cluster (deploy/controller.sh
# --rabbit-cluster): the cluster's shared Erlang cookie, pause_minority (a
# node that sees less than a majority stops serving rather than split the
# queues), and, unless it is the seed, joined to the seed node (stop_app,
# join_cluster, start_app) and holding a replica of every quorum queue
# (rabbitmq-queues grow). Idempotent: a node already using that cookie and
# setting is not restarted, a node already in the seed's cluster not joined.
#
# Usage: rabbit-cluster-member.sh --cookie FILE [--join NODE]
#            [--conf PATH] [--cookie-path PATH]       (as root)
#   --cookie FILE       the cluster's cookie (the same file on every controller)
#   --join NODE         the seed node (rabbit@controller1); omitted on the seed
#   --conf PATH         RabbitMQ's config (/etc/rabbitmq/rabbitmq.conf)
#   --cookie-path PATH  where RabbitMQ reads its cookie (/var/lib/rabbitmq/.erlang.cookie)
# RABBITMQ_CONF_ENV_FILE selects another node for rabbitmqctl (as in
# start-controller-services.sh); RABBIT_STOP_CMD / RABBIT_START_CMD replace the
# service's stop and start (tests use deploy/lab/rabbit-node.sh's).
set -euo pipefail
PROG=rabbit-cluster-member.sh
# shellcheck source=deploy/role-common.sh
. "$(dirname "$(realpath "$0")")/role-common.sh"

COOKIE='' JOIN='' RCONF=/etc/rabbitmq/rabbitmq.conf COOKIE_PATH=/var/lib/rabbitmq/.erlang.cookie
while (($#)); do
    case $1 in
    --cookie) COOKIE=${2:?}; shift ;;
    --join) JOIN=${2:?}; shift ;;
    --conf) RCONF=${2:?}; shift ;;
    --cookie-path) COOKIE_PATH=${2:?}; shift ;;
    *) die "unknown option $1 (--cookie FILE [--join NODE] [--conf PATH] [--cookie-path PATH])" ;;
    esac
    shift
done
[[ -s $COOKIE ]] || die "--cookie FILE is required (a non-empty file)"
[[ $(<"$COOKIE") =~ ^[A-Za-z0-9]{20,255}$ ]] || die "cookie $COOKIE: 20-255 letters and digits"
[[ -z $JOIN || $JOIN =~ ^[A-Za-z0-9_.-]+@[A-Za-z0-9_.-]+$ ]] || die "bad --join '$JOIN' (NAME@HOST)"

stop_rabbit() {
    if [[ -n ${RABBIT_STOP_CMD:-} ]]; then bash -c "$RABBIT_STOP_CMD"
    elif have_systemd; then systemctl stop rabbitmq-server
    else rabbitmqctl -q stop >/dev/null 2>&1 || true
    fi
}
start_rabbit() {
    local deadline=$((SECONDS + 120))
    if [[ -n ${RABBIT_START_CMD:-} ]]; then bash -c "$RABBIT_START_CMD"
    elif have_systemd; then systemctl start rabbitmq-server
    else rabbitmq-server -detached
    fi
    # (await_startup fails until the node wrote its pid file: ask again)
    until rabbitmqctl -q await_startup --timeout 10 >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "RabbitMQ did not start again within 120 s"
        sleep 1
    done
}

# The cookie and pause_minority are read at the node's start: change them
# with the node stopped (rabbitmqctl needs the old cookie to stop it).
setting='cluster_partition_handling = pause_minority'
cookie_ok=0 conf_ok=0
[[ -f $COOKIE_PATH ]] && cmp -s "$COOKIE" "$COOKIE_PATH" && cookie_ok=1
[[ -f $RCONF ]] && grep -qxF "$setting" "$RCONF" && conf_ok=1
if ((!cookie_ok || !conf_ok)); then
    log "setting the cluster's cookie and $setting; restarting RabbitMQ"
    stop_rabbit
    if ((!cookie_ok)); then
        install -m 400 -o rabbitmq -g rabbitmq "$COOKIE" "$COOKIE_PATH"
    fi
    if ((!conf_ok)); then
        mkdir -p "$(dirname "$RCONF")"
        touch "$RCONF"
        sed -i '/^[[:space:]]*cluster_partition_handling[[:space:]]*=/d' "$RCONF"
        echo "$setting" >> "$RCONF"
    fi
    start_rabbit
fi

if [[ -n $JOIN ]]; then
    # A node lists itself among its cluster's nodes: the seed never joins itself.
    if rabbitmqctl -q cluster_status --formatter json | grep -qF "\"$JOIN\""; then
        log "RabbitMQ: already in the cluster of $JOIN"
    else
        log "RabbitMQ: joining the cluster of $JOIN (this node's data is reset)"
        rabbitmqctl -q stop_app
        rabbitmqctl -q join_cluster "$JOIN" || { rabbitmqctl -q start_app; die "join_cluster $JOIN failed"; }
        rabbitmqctl -q start_app
    fi
    # Quorum queues made before this node joined (the seed's alone, say) have
    # no replica here: add one to each (a queue that has one is left alone).
    self=$(rabbitmqctl -q eval 'node().' | tr -d "'")
    rabbitmq-queues -q grow "$self" all >/dev/null
fi
