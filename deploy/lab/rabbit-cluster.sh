#!/usr/bin/env bash
# A RabbitMQ cluster of N nodes (default 3) on loopback, beside the system's
# broker and any node another test made: each node is a rabbit-node.sh node
# (own name, AMQP and distribution ports, data dir, env file that keeps the
# system's rabbitmq-env.conf out) and all of them share one Erlang cookie in
# a HOME of their own and an epmd of their own (ERL_EPMD_PORT), so neither
# the system's cookie nor the system's epmd (4369) is involved.
# cluster_partition_handling = pause_minority: a node that sees less than a
# majority stops serving rather than split the cluster.
#
# Usage: rabbit-cluster.sh up DIR [N]
#            makes DIR (reachable by the rabbitmq user: not under a root-only
#            tmp dir), starts the nodes, joins nodes 2..N to node 1
#            (join_cluster), adds a vhost and a user with a random password;
#            prints eval-able facts (also in DIR/facts):
#              RABBIT_CLUSTER_URL=rabbit://u:p@127.0.0.1:P1,u:p@127.0.0.1:P2,.../vhost
#              RABBIT_CLUSTER_NODES="name1@localhost ..."  RABBIT_CLUSTER_PORTS="P1 ..."
#              RABBIT_CLUSTER_NODE_DIRS="DIR/n1 ..."  (rabbit-node.sh start|stop|kill|ctl DIR/nI)
#              RABBIT_CLUSTER_VHOST, RABBIT_CLUSTER_USER, RABBIT_CLUSTER_PASSWORD,
#              RABBIT_CLUSTER_EPMD_PORT
#        rabbit-cluster.sh status DIR: which nodes run; cluster_status from one
#        rabbit-cluster.sh down DIR: kill -9 every node, stop the cluster's
#            epmd, remove DIR
set -euo pipefail
PROG=rabbit-cluster.sh
LAB=$(dirname "$(realpath "$0")")
die() { echo "$PROG: $*" >&2; exit 1; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
node() { bash "$LAB/rabbit-node.sh" "$@"; }

action=${1:-} dir=${2:-}
[[ -n $action && -n $dir ]] || die "usage: $PROG up DIR [N] | status DIR | down DIR"
dir=$(realpath -m "$dir")

# N consecutive AMQP ports P..P+N-1, their distribution ports (+20000,
# rabbit-node.sh) and an epmd port P+N, all closed now.
pick_ports() {
    local n=$1 base i ok
    for _ in $(seq 100); do
        base=$((20000 + RANDOM % 20000)) ok=1
        for ((i = 0; i <= n; i++)); do
            if port_open $((base + i)) || port_open $((base + i + 20000)); then ok=0; break; fi
        done
        ((ok)) && { echo "$base"; return; }
    done
    die "no free ports"
}

up() {
    local n=${1:-3} base name i user password vhost url="" nodes="" ports="" dirs="" pids=()
    [[ $n =~ ^[0-9]+$ && $n -ge 1 ]] || die "N must be a positive number"
    [[ ! -e $dir/facts ]] || die "$dir already holds a cluster (down it first)"
    [[ ! -e $dir ]] || [[ -z $(ls -A "$dir") ]] || die "$dir is not empty"
    mkdir -p "$dir/home"
    chmod 755 "$dir"
    base=$(pick_ports "$n")
    name=mnc$(head -c4 /dev/urandom | od -An -tx1 | tr -d ' \n')
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$dir/home/.erlang.cookie"
    chmod 400 "$dir/home/.erlang.cookie"
    chown -R rabbitmq:rabbitmq "$dir/home"
    echo "RABBIT_CLUSTER_EPMD_PORT=$((base + n))" > "$dir/facts.partial"
    for ((i = 1; i <= n; i++)); do
        RABBIT_NODE_HOME=$dir/home RABBIT_NODE_EPMD_PORT=$((base + n)) \
            node create "$dir/n$i" "$name-$i" $((base + i - 1)) >/dev/null
        # net_ticktime 10 (default 60): a node cut off is seen gone (and
        # pauses, being the minority) within ~10-15 s, not ~75 s.
        printf 'cluster_partition_handling = pause_minority\nnet_ticktime = 10\n' \
            >> "$dir/n$i/rabbitmq.conf"
        nodes+="${nodes:+ }$name-$i@localhost" ports+="${ports:+ }$((base + i - 1))"
        dirs+="${dirs:+ }$dir/n$i"
    done
    # Started side by side; `start` waits for each to serve AMQP (asking
    # rabbitmqctl await_startup right after -detached fails: no pid file yet).
    for d in $dirs; do node start "$d" & pids+=($!); done
    for p in "${pids[@]}"; do wait "$p" || die "a node did not start (logs in $dir/n*/log)"; done
    for ((i = 2; i <= n; i++)); do
        node ctl "$dir/n$i" -q stop_app
        # (3.10 logs harmless "tracked connection table" errors while joining)
        node ctl "$dir/n$i" -q join_cluster "$name-1@localhost" 2>>"$dir/join.log" \
            || { cat "$dir/join.log" >&2; die "node $i could not join the cluster"; }
        node ctl "$dir/n$i" -q start_app
    done
    user=mininova password=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
    vhost=mininova
    node ctl "$dir/n1" -q add_vhost "$vhost"
    printf '%s' "$password" | node ctl "$dir/n1" -q add_user "$user" >/dev/null
    node ctl "$dir/n1" -q set_permissions -p "$vhost" "$user" ".*" ".*" ".*"
    for p in $ports; do url+="${url:+,}$user:$password@127.0.0.1:$p"; done
    cat > "$dir/facts.partial" <<FACTS
RABBIT_CLUSTER_URL=rabbit://$url/$vhost
RABBIT_CLUSTER_NODES="$nodes"
RABBIT_CLUSTER_PORTS="$ports"
RABBIT_CLUSTER_NODE_DIRS="$dirs"
RABBIT_CLUSTER_VHOST=$vhost
RABBIT_CLUSTER_USER=$user
RABBIT_CLUSTER_PASSWORD=$password
RABBIT_CLUSTER_EPMD_PORT=$((base + n))
FACTS
    mv "$dir/facts.partial" "$dir/facts"
    cat "$dir/facts"
}

facts() {
    local f
    for f in "$dir/facts" "$dir/facts.partial"; do
        [[ -e $f ]] && { cat "$f"; return; }
    done
    return 1
}

status() {
    local d any=""
    facts >/dev/null || die "no cluster in $dir"
    for d in "$dir"/n*/; do
        d=${d%/}
        # A killed node stays a zombie for a while here: not running.
        if [[ -s $d/pid ]] && [[ $(awk '{print $3}' "/proc/$(cat "$d/pid")/stat" 2>/dev/null) =~ ^[^Z]$ ]]; then
            echo "$(basename "$d"): running (pid $(cat "$d/pid"))"
            any=${any:-$d}
        else
            echo "$(basename "$d"): not running"
        fi
    done
    [[ -n $any ]] && node ctl "$any" -q cluster_status
}

down() {
    local d epmd_port
    [[ -d $dir ]] || return 0
    # Only ever remove a directory `up` made.
    [[ -e $dir/facts || -e $dir/facts.partial || -e $dir/home/.erlang.cookie ]] \
        || die "$dir holds no cluster of $PROG: not removing it"
    epmd_port=$(facts 2>/dev/null | sed -n 's/^RABBIT_CLUSTER_EPMD_PORT=//p')
    for d in "$dir"/n*/; do
        [[ -e ${d}rabbitmq-env.conf ]] && node destroy "${d%/}"
    done
    # The first node started the cluster's epmd on its own port: once no node
    # is registered, it accepts -kill (the system's, on 4369, is never asked).
    if [[ -n $epmd_port ]]; then
        for _ in 1 2 3 4 5; do
            port_open "$epmd_port" || break
            epmd -port "$epmd_port" -kill >/dev/null 2>&1 || sleep 1
        done
    fi
    rm -rf "$dir"
}

case $action in
up) shift 2; up "$@" ;;
status) status ;;
down) down ;;
*) die "unknown action $action" ;;
esac
