#!/usr/bin/env bash
# start|stop|status of the four mininova daemons of one stack, in the
# background (no systemd here), with pid files and logs under $STATE/.
# Usage: daemons.sh start|stop|status STATE_DIR [VENV]
set -euo pipefail
action=$1 STATE=$(realpath -m "$2") VENV=$(realpath -m "${3:-.venv}")
CONF=$STATE/mininova.conf RUN=$STATE/run
mkdir -p "$RUN" "$STATE/logs"
# daemon_pid NAME: running means not a zombie, and our daemon (not a reused pid).
# shellcheck source=deploy/daemon-pid.sh
. "$(dirname "$(realpath "${BASH_SOURCE[0]}")")/daemon-pid.sh"

for d in api scheduler conductor compute; do
    case $action in
    start)
        if pid=$(daemon_pid "$d"); then
            echo "mininova-$d already running (pid $pid)"; continue
        fi
        setsid "$VENV/bin/mininova-$d" --config-file "$CONF" \
            --log-file "$STATE/logs/$d.log" </dev/null >>"$STATE/logs/$d.out" 2>&1 &
        pid=$!
        echo "$pid" > "$RUN/$d.pid"
        if ! await_daemon "$d"; then
            echo "mininova-$d did not start: see $STATE/logs/$d.out" >&2; exit 1
        fi
        echo "mininova-$d started (pid $pid, log $STATE/logs/$d.log)";;
    stop)
        if pid=$(daemon_pid "$d"); then
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 100); do alive "$pid" || break; sleep 0.1; done
            kill -9 "$pid" 2>/dev/null || true
            echo "mininova-$d stopped"
        fi
        rm -f "$RUN/$d.pid";;
    status)
        if pid=$(daemon_pid "$d"); then echo "mininova-$d running (pid $pid)"
        else echo "mininova-$d stopped"; fi;;
    *) echo "usage: $0 start|stop|status STATE_DIR [VENV]" >&2; exit 2;;
    esac
done
