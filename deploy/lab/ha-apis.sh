#!/usr/bin/env bash
# Several mininova-api processes behind one HAProxy on this machine: the
# replicated API of issue 16 on one host, for trying failures by hand. The
# database and the broker are those of CONFIG (a mininova.conf); each API runs
# with CONFIG plus DIR/apiI.conf ([api] port), HAProxy with the configuration
# deploy/haproxy-cfg.sh writes (as deploy/controller.sh --peers does).
#
# Usage: ha-apis.sh up DIR CONFIG [N [LB_PORT]]
#            makes DIR, starts N APIs (default 3) on free ports of 127.0.0.1
#            and HAProxy on 127.0.0.1:LB_PORT (default: a free port); waits
#            until HAProxy sees them all up; prints eval-able facts (also in
#            DIR/facts):
#              HA_URL=http://127.0.0.1:LB_PORT  HA_API_PORTS="P1 P2 P3"
#              HA_API_PIDS="pid1 pid2 pid3"  HA_HAPROXY_PID=pid  HA_SOCKET=DIR/haproxy.sock
#        ha-apis.sh status DIR: each API's state as HAProxy sees it (UP, DOWN ...)
#        ha-apis.sh kill DIR I: kill -9 API number I (1..N)
#        ha-apis.sh start DIR I: start API I again (same port) unless it runs
#        ha-apis.sh down DIR: stop HAProxy and the APIs, remove DIR
# Env: PYTHON (default: the venv's next to this checkout, else python3);
#      HA_INTER, HA_FALL, HA_RISE (deploy/haproxy-cfg.sh); HA_TIMEOUT (30 s).
set -euo pipefail
PROG=ha-apis.sh
LAB=$(dirname "$(realpath "$0")")
REPO=$(dirname "$(dirname "$LAB")")
die() { echo "$PROG: $*" >&2; exit 1; }
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
[[ -x $PYTHON ]] || PYTHON=python3
TIMEOUT=${HA_TIMEOUT:-30}

action=${1:-} dir=${2:-}
[[ -n $action && -n $dir ]] || die "usage: $PROG up DIR CONFIG [N [LB_PORT]] | status DIR | kill|start DIR I | down DIR"
dir=$(realpath -m "$dir")

free_port() {
    "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# What HAProxy thinks of each API: "NAME STATUS" lines from its stats socket.
states() {
    "$PYTHON" - "$dir/haproxy.sock" <<'PY'
import csv, io, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(5)
s.connect(sys.argv[1])
s.sendall(b"show stat\n")
data = b""
while chunk := s.recv(65536):
    data += chunk
for row in csv.DictReader(io.StringIO(data.decode().lstrip("# "))):
    if row["pxname"] == "mininova-api" and row["svname"] not in ("FRONTEND", "BACKEND"):
        print(row["svname"], row["status"])
PY
}

start_api() {  # I: API I with CONFIG and its DIR/apiI.conf, in the background
    (cd "$REPO" && exec setsid "$PYTHON" -m nova_api.cmd --config-file "$(<"$dir/config")" \
        --config-file "$dir/api$1.conf" --log-file "$dir/api$1.log" \
        </dev/null >>"$dir/api$1.out" 2>&1) &
    echo $! > "$dir/api$1.pid"
}

# API I again, on its port, unless it runs; the facts get its new pid. Waits
# until HAProxy sees it up.
restart() {  # I
    local i=$1 pid n j pids="" deadline=$((SECONDS + TIMEOUT))
    [[ $i =~ ^[0-9]+$ && -f $dir/api$i.conf && -f $dir/facts ]] || die "no API $i in $dir"
    pid=$(<"$dir/api$i.pid")
    if ! [[ -e /proc/$pid && $(awk '{print $3}' "/proc/$pid/stat") != Z ]]; then
        start_api "$i"
        n=$(sed -n 's/^HA_API_PORTS=//p' "$dir/facts" | tr -d '"' | wc -w)
        for ((j = 1; j <= n; j++)); do pids+="${pids:+ }$(<"$dir/api$j.pid")"; done
        sed -i "s/^HA_API_PIDS=.*/HA_API_PIDS=\"$pids\"/" "$dir/facts"
    fi
    until states | grep -qx "api$i UP"; do
        ((SECONDS < deadline)) || die "API $i not up behind HAProxy within $TIMEOUT s"
        sleep 0.2
    done
}

up() {
    local conf=${1:-} n=${2:-3} lb=${3:-} i port ports=() pids=() servers=() deadline
    [[ -f $conf ]] || die "CONFIG '$conf' is not a file"
    conf=$(realpath "$conf")
    [[ $n =~ ^[0-9]+$ && $n -ge 1 ]] || die "N must be a positive number"
    [[ ! -e $dir ]] || [[ -z $(ls -A "$dir") ]] || die "$dir is not empty"
    command -v haproxy >/dev/null || [[ -x /usr/sbin/haproxy ]] ||
        die "haproxy is not installed (apt-get install haproxy; deploy/install-test-tools.sh)"
    mkdir -p "$dir"
    touch "$dir/.ha-apis"   # down removes only a DIR that up made
    echo "$conf" > "$dir/config"
    for ((i = 1; i <= n; i++)); do
        port=$(free_port)
        printf '[api]\nlisten = 127.0.0.1\nport = %s\n' "$port" > "$dir/api$i.conf"
        start_api "$i"
        ports+=("$port") pids+=("$(<"$dir/api$i.pid")") servers+=("api$i=127.0.0.1:$port")
    done
    lb=${lb:-$(free_port)}
    bash "$(dirname "$LAB")/haproxy-cfg.sh" --bind "127.0.0.1:$lb" \
        --stats-socket "$dir/haproxy.sock" "${servers[@]}" > "$dir/haproxy.cfg"
    "$(command -v haproxy || echo /usr/sbin/haproxy)" -D -p "$dir/haproxy.pid" \
        -f "$dir/haproxy.cfg" || die "haproxy did not start (see $dir/haproxy.cfg)"
    deadline=$((SECONDS + TIMEOUT))
    until [[ -S $dir/haproxy.sock ]] && (($(states | grep -c ' UP$') == n)); do
        ((SECONDS < deadline)) || { states >&2 || true
            die "not every API up behind HAProxy within $TIMEOUT s (logs: $dir/api*.log)"; }
        sleep 0.2
    done
    {
        echo "HA_URL=http://127.0.0.1:$lb"
        echo "HA_API_PORTS=\"${ports[*]}\""
        echo "HA_API_PIDS=\"${pids[*]}\""
        echo "HA_HAPROXY_PID=$(<"$dir/haproxy.pid")"
        echo "HA_SOCKET=$dir/haproxy.sock"
    } | tee "$dir/facts"
}

stop_pid() {  # PIDFILE [SIGNAL]
    local pid
    [[ -f $1 ]] || return 0
    pid=$(<"$1")
    kill "-${2:-TERM}" "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
}

case $action in
up) shift 2; up "$@" ;;
status) [[ -S $dir/haproxy.sock ]] || die "no HAProxy in $dir"; states ;;
kill) [[ ${3:-} =~ ^[0-9]+$ && -f $dir/api$3.pid ]] || die "usage: $PROG kill DIR I (an API of DIR)"
      kill -KILL "$(<"$dir/api$3.pid")" ;;
start) restart "${3:-}" ;;
down)
    [[ -e $dir ]] || exit 0
    [[ -e $dir/.ha-apis ]] || die "$dir was not made by $PROG up: left alone"
    stop_pid "$dir/haproxy.pid"
    for f in "$dir"/api*.pid; do [[ -e $f ]] && stop_pid "$f"; done
    rm -rf "$dir" ;;
*) die "unknown action '$action' (up, status, kill, start, down)" ;;
esac
