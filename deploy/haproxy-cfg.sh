#!/usr/bin/env bash
# Print the HAProxy configuration that puts several mininova-api processes
# behind one address (used by deploy/controller.sh --peers, the lab's
# deploy/lab/ha-apis.sh and mininova_lab/haproxy.py: one text for all).
#
# Usage: haproxy-cfg.sh --bind ADDR:PORT [--stats-socket PATH] NAME=HOST:PORT...
#
# Each API is checked with GET /healthcheck (200 while it reaches the database
# and the broker) every HA_INTER (1s): down after HA_FALL (2) failed checks,
# up again after HA_RISE (2) good ones; a connection refused or reset on real
# traffic marks it down at once (observe layer4, on-error mark-down). A request
# whose connection to an API failed is sent again, to another API (retries,
# option redispatch, retry-on conn-failure): it never reached a server, so
# that is safe even for a POST. A request an API died while serving is not
# retried here (it may have done its work): the client retries it, with an
# X-Idempotency-Key for POST /v1/vms.
set -euo pipefail
BIND='' SOCKET='' SERVERS=()
while (($#)); do
    case $1 in
    --bind) BIND=${2:?}; shift ;;
    --stats-socket) SOCKET=${2:?}; shift ;;
    *=*:*) SERVERS+=("$1") ;;
    *) echo "haproxy-cfg.sh: bad argument '$1' (NAME=HOST:PORT, --bind, --stats-socket)" >&2
       exit 2 ;;
    esac
    shift
done
[[ -n $BIND ]] || { echo "haproxy-cfg.sh: --bind ADDR:PORT is required" >&2; exit 2; }
((${#SERVERS[@]})) || { echo "haproxy-cfg.sh: no API (NAME=HOST:PORT)" >&2; exit 2; }
INTER=${HA_INTER:-1s} FALL=${HA_FALL:-2} RISE=${HA_RISE:-2}

echo "# Written by deploy/haproxy-cfg.sh: mininova-api behind HAProxy."
echo "global"
echo "    maxconn 4096"
[[ -n $SOCKET ]] && echo "    stats socket $SOCKET mode 600 level admin"
cat <<CFG

defaults
    mode http
    timeout connect 1s
    timeout client 120s
    timeout server 120s
    timeout http-request 20s
    # Longer than the API's [api] healthcheck_timeout (2 s): a check gets the
    # API's 503 naming what it cannot reach rather than a timeout of its own.
    timeout check 3s
    retries 3
    option redispatch 1
    retry-on conn-failure

frontend mininova-api
    bind $BIND
    default_backend mininova-api

backend mininova-api
    balance roundrobin
    option httpchk GET /healthcheck
    http-check expect status 200
    default-server check inter $INTER fastinter 500ms downinter $INTER fall $FALL rise $RISE observe layer4 error-limit 1 on-error mark-down
CFG
for server in "${SERVERS[@]}"; do
    echo "    server ${server%%=*} ${server#*=}"
done
