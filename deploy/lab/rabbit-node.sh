#!/usr/bin/env bash
# A RabbitMQ node of its own beside the system's: its own node name, ports,
# data dir, logs and enabled-plugins file, run as the rabbitmq user by the
# Debian wrappers (so it shares the system's Erlang cookie and epmd). CI runs
# its whole suite on one, so every run installs onto a broker that has never
# seen mininova; tests that crash a broker crash one of these, never the
# system's. The node is selected by RABBITMQ_CONF_ENV_FILE=DIR/rabbitmq-env.conf,
# which rabbitmq-server, rabbitmqctl and rabbitmq-plugins all read.
#
# Usage: rabbit-node.sh create DIR NAME AMQP_PORT [MANAGEMENT_PORT]
#            writes the node's files (does not start it); prints
#            RABBITMQ_CONF_ENV_FILE=DIR/rabbitmq-env.conf
#            With RABBIT_NODE_HOME=H (a dir holding an .erlang.cookie
#            readable by rabbitmq) and RABBIT_NODE_EPMD_PORT=P in the
#            environment, the node (and rabbitmqctl for it) uses that cookie
#            and an epmd of its own on P instead of the system's: HOME and
#            ERL_EPMD_PORT are set in its env file, which the scripts read
#            after the root wrappers' `su rabbitmq` reset HOME (see
#            rabbit-cluster.sh).
#        rabbit-node.sh start|stop|kill|destroy DIR
#            start: waits until it serves AMQP; stop: clean stop; kill: kill -9
#            of the node's VM; destroy: kill it and remove DIR
#        rabbit-node.sh ctl DIR ARGS...: rabbitmqctl ARGS for this node
set -euo pipefail
PROG=rabbit-node.sh
die() { echo "$PROG: $*" >&2; exit 1; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

action=${1:-} dir=${2:-}
[[ -n $action && -n $dir ]] || die "usage: $PROG create DIR NAME AMQP_PORT [MGMT_PORT] | start|stop|kill|destroy DIR"
dir=$(realpath -m "$dir")
env_file=$dir/rabbitmq-env.conf

setting() { sed -n "s/^$1=//p" "$env_file"; }
node_pid() { [[ -s $dir/pid ]] && cat "$dir/pid"; }
# A killed process stays a zombie for a while here: "gone" = not running.
running() {
    local pid; pid=$(node_pid) || return 1
    [[ -e /proc/$pid && $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]]
}

case $action in
create)
    name=${3:?node name} amqp=${4:?AMQP port} mgmt=${5:-}
    mkdir -p "$dir"
    chown rabbitmq:rabbitmq "$dir"
    # The empty-but-ours env file also keeps the system's rabbitmq-env.conf
    # (which forces the node name) out.
    cat > "$env_file" <<ENV
NODENAME=$name@localhost
NODE_IP_ADDRESS=127.0.0.1
NODE_PORT=$amqp
DIST_PORT=$((amqp + 20000))
MNESIA_BASE=$dir/mnesia
LOG_BASE=$dir/log
ENABLED_PLUGINS_FILE=$dir/enabled_plugins
CONFIG_FILE=$dir/rabbitmq
PID_FILE=$dir/pid
ERL_EPMD_ADDRESS=127.0.0.1
ENV
    if [[ -n ${RABBIT_NODE_HOME:-} ]]; then
        [[ -r $RABBIT_NODE_HOME/.erlang.cookie ]] || die "no .erlang.cookie in $RABBIT_NODE_HOME"
        echo "HOME=$(realpath "$RABBIT_NODE_HOME")" >> "$env_file"
    fi
    if [[ -n ${RABBIT_NODE_EPMD_PORT:-} ]]; then
        echo "ERL_EPMD_PORT=$RABBIT_NODE_EPMD_PORT" >> "$env_file"
    fi
    {
        echo "listeners.tcp.default = 127.0.0.1:$amqp"
        if [[ -n $mgmt ]]; then
            echo "management.tcp.ip = 127.0.0.1"
            echo "management.tcp.port = $mgmt"
        fi
    } > "$dir/rabbitmq.conf"
    chmod 644 "$env_file" "$dir/rabbitmq.conf"
    echo "RABBITMQ_CONF_ENV_FILE=$env_file"
    ;;
start)
    [[ -e $env_file ]] || die "no node in $dir (create it first)"
    export RABBITMQ_CONF_ENV_FILE=$env_file
    amqp=$(setting NODE_PORT)
    if ! running; then
        rm -f "$dir/pid"
        rabbitmq-server -detached
    fi
    deadline=$((SECONDS + 90))
    until port_open "$amqp"; do
        ((SECONDS < deadline)) || die "node in $dir does not serve on $amqp after 90 s"
        sleep 0.2
    done
    ;;
stop)
    export RABBITMQ_CONF_ENV_FILE=$env_file
    if running; then rabbitmqctl -q stop >/dev/null 2>&1 || true; fi
    ;;
ctl)
    [[ -e $env_file ]] || die "no node in $dir"
    shift 2
    RABBITMQ_CONF_ENV_FILE=$env_file rabbitmqctl "$@"
    ;;
kill)
    if pid=$(node_pid); then kill -9 "$pid" 2>/dev/null || true; fi
    ;;
destroy)
    if pid=$(node_pid); then kill -9 "$pid" 2>/dev/null || true; fi
    rm -rf "$dir"
    ;;
*) die "unknown action $action" ;;
esac
