#!/usr/bin/env bash
# start|stop|status of the three mininova daemons of one stack, in the
# background (no systemd here), with pid files and logs under $STATE/.
# Usage: daemons.sh start|stop|status STATE_DIR [VENV]
set -euo pipefail
action=$1 STATE=$(realpath -m "$2") VENV=$(realpath -m "${3:-.venv}")
CONF=$STATE/mininova.conf
mkdir -p "$STATE/run" "$STATE/logs"

alive() { [[ -e $STATE/run/$1.pid ]] && kill -0 "$(cat "$STATE/run/$1.pid")" 2>/dev/null; }

for d in api scheduler compute; do
    case $action in
    start)
        alive "$d" && { echo "mininova-$d already running"; continue; }
        setsid "$VENV/bin/mininova-$d" --config-file "$CONF" \
            --log-file "$STATE/logs/$d.log" </dev/null >>"$STATE/logs/$d.out" 2>&1 &
        echo $! > "$STATE/run/$d.pid"
        echo "mininova-$d started (pid $!, log $STATE/logs/$d.log)";;
    stop)
        if alive "$d"; then
            pid=$(cat "$STATE/run/$d.pid"); kill "$pid"
            for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -9 "$pid" 2>/dev/null || true
            echo "mininova-$d stopped"
        fi
        rm -f "$STATE/run/$d.pid";;
    status)
        if alive "$d"; then echo "mininova-$d running"; else echo "mininova-$d stopped"; fi;;
    *) echo "usage: $0 start|stop|status STATE_DIR [VENV]" >&2; exit 2;;
    esac
done
