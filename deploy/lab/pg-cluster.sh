#!/usr/bin/env bash
# A PostgreSQL cluster of its own beside the system's, with Debian's default
# authentication (peer on the socket, scram-sha-256 over TCP): CI runs its whole
# suite on one, so nothing can lean on trust authentication or on roles and
# databases an earlier run left behind.
#
# Usage: pg-cluster.sh create NAME PORT   (creates it, stopped)
#        pg-cluster.sh start|stop|destroy NAME   (start: unless it runs)
#        pg-cluster.sh kill NAME   (kill -9 of the postmaster and every process
#            it started, together: a crash of the server; start recovers from WAL)
set -euo pipefail
PROG=pg-cluster.sh
die() { echo "$PROG: $*" >&2; exit 1; }
action=${1:-} name=${2:-}
[[ -n $action && -n $name ]] || die "usage: $PROG create NAME PORT | start|stop|kill|destroy NAME"
version=$(find /etc/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -V | tail -n1)
[[ -n $version ]] || die "no PostgreSQL installed (/etc/postgresql is empty)"

case $action in
create)
    port=${3:?port}
    pg_createcluster "$version" "$name" -p "$port" -- \
        --auth-local=peer --auth-host=scram-sha-256 >/dev/null
    echo "MININOVA_PG_CLUSTER=$version $name"
    ;;
start)  # (idempotent)
    if ! pg_ctlcluster "$version" "$name" status >/dev/null 2>&1; then
        pg_ctlcluster --skip-systemctl-redirect "$version" "$name" start
    fi
    ;;
stop) pg_ctlcluster --skip-systemctl-redirect "$version" "$name" stop -m fast ;;
kill)
    [[ -d /etc/postgresql/$version/$name ]] || die "no cluster $version $name"
    datadir=$(pg_lsclusters -h "$version" "$name" | awk '{print $6}')
    pidfile=$datadir/postmaster.pid
    [[ -s $pidfile ]] || die "cluster $version $name is not running (no $pidfile)"
    pid=$(head -n1 "$pidfile")
    if ! [[ $pid =~ ^[0-9]+$ ]] || ! kill -0 "$pid" 2>/dev/null; then
        die "no postmaster $pid"
    fi
    # The children first listed, then all killed at once: none outlives the
    # postmaster (an orphaned backend would keep the shared memory attached).
    mapfile -t children < <(ps -o pid= --ppid "$pid")
    kill -9 "$pid" "${children[@]}"
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    echo "killed postmaster $pid and ${#children[@]} children"
    ;;
destroy)
    if [[ -d /etc/postgresql/$version/$name ]]; then
        pg_dropcluster --stop "$version" "$name"
    fi
    ;;
*) die "unknown action $action" ;;
esac
