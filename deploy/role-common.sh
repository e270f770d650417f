# shellcheck shell=bash
# Helpers shared by deploy/controller.sh and deploy/compute.sh (sourced, not run).
# The caller sets PROG, STATE, CONF, VENV, LOGS and RUN before using them.

log() { echo "$PROG: $*" >&2; }
die() { echo "$PROG: $*" >&2; exit 1; }

DEPLOY=$(dirname "$(realpath "${BASH_SOURCE[0]}")")
REPO=$(dirname "$DEPLOY")

# systemd as PID 1 (a real host, the Vagrant VMs) or not (these CI machines,
# containers): units there, background processes with pid files here.
# MININOVA_INIT=systemd|background overrides the guess.
resolve_paths() {  # after option parsing: STATE, CONF, VENV, LOGS, RUN
    [[ $(id -u) -eq 0 ]] || die "must run as root"
    if [[ -n $STATE ]]; then  # --state-dir: the config lives there too
        STATE=$(realpath -m "$STATE"); CONF=$STATE/mininova.conf
    else
        STATE=/var/lib/mininova; CONF=/etc/mininova/mininova.conf
    fi
    VENV=$(realpath -m "$VENV")
    LOGS=$STATE/logs RUN=$STATE/run
}

have_systemd() {
    case ${MININOVA_INIT:-} in systemd) return 0 ;; background) return 1 ;; esac
    [[ -d /run/systemd/system ]]
}

missing_pkgs() {  # print the packages among "$@" that are not installed
    local p
    for p in "$@"; do
        dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed || echo "$p"
    done
}

apt_install() {  # install what is missing of "$@" (no apt call when nothing is)
    local todo
    mapfile -t todo < <(missing_pkgs "$@")
    ((${#todo[@]})) || return 0
    log "installing ${todo[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confold \
        -o Dpkg::Options::=--force-confdef "${todo[@]}"
}

# Write stdin to FILE (mode 0600) only when the content differs; returns 0 when
# it wrote, 1 when FILE already had that content.
write_if_changed() {
    local file=$1 tmp
    mkdir -p "$(dirname "$file")"
    tmp=$(mktemp "$file.XXXXXX")
    cat > "$tmp"
    chmod 600 "$tmp"
    if [[ -e $file ]] && cmp -s "$tmp" "$file"; then
        rm -f "$tmp"
        return 1
    fi
    mv -f "$tmp" "$file"
    return 0
}

urlencode() {  # (most values are plain: no python start-up for them)
    [[ $1 =~ ^[A-Za-z0-9._~-]*$ ]] && { echo "$1"; return 0; }
    python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"
}

transport_url() {  # USER PASSWORD HOST[,HOST...] PORT VHOST
    # Several hosts (a RabbitMQ cluster): rabbit://u:p@h1:P,u:p@h2:P/vhost,
    # among which the daemons fail over.
    local path=/ url='' sep='' host
    [[ $5 == / ]] || path=/$(urlencode "$5")
    for host in ${3//,/ }; do
        url+="$sep$(urlencode "$1"):$(urlencode "$2")@$host:$4"
        sep=,
    done
    echo "rabbit://$url$path"
}

# The venv: created, or updated by setup-venv.sh, from this checkout. A venv
# that runs mininova from another checkout (e.g. a developer's, shared) is left
# alone: re-installing would point it at this one.
setup_venv() {
    local src
    if [[ -x $VENV/bin/python ]] &&
       src=$("$VENV/bin/python" -I -c 'import common, os; print(os.path.dirname(os.path.dirname(os.path.realpath(common.__file__))))' 2>/dev/null) &&
       [[ $src != "$(realpath "$REPO")" ]]; then
        log "the venv $VENV runs mininova from $src, not from $REPO: left as it is"
        return 0
    fi
    VENV=$VENV MININOVA_VENV_EXTRAS='' bash "$DEPLOY/setup-venv.sh" >&2
}

# --- the daemons ----------------------------------------------------------------
# The units in deploy/systemd/ name the default paths; rendered with this
# host's venv and config before they are installed.
UNIT_DIR=${MININOVA_UNIT_DIR:-/etc/systemd/system}
render_unit() {  # NAME -> the unit text for this VENV and CONF
    sed -e "s|/opt/mininova/venv|$VENV|g" -e "s|/etc/mininova/mininova.conf|$CONF|g" \
        -e "s|/etc/mininova/haproxy.cfg|$(dirname "$CONF")/haproxy.cfg|g" \
        "$DEPLOY/systemd/mininova-$1.service"
}

# HAProxy in front of the APIs (controller.sh --peers): its own process (unit
# mininova-haproxy, or haproxy -D with RUN/haproxy.pid), never the system's
# haproxy service; (re)started when its configuration changed (RESTART=1).
HAPROXY=/usr/sbin/haproxy
haproxy_pid() {
    local pid
    [[ -s $RUN/haproxy.pid ]] || return 1
    pid=$(head -n1 "$RUN/haproxy.pid")
    [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" || return 1
    tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "-f $1" || return 1
    echo "$pid"
}
start_haproxy() {  # CFG RESTART
    local cfg=$1 restart=$2 unit pid
    "$HAPROXY" -c -q -f "$cfg" || die "HAProxy refuses $cfg"
    if have_systemd; then
        unit=$UNIT_DIR/mininova-haproxy.service
        if render_unit haproxy | write_if_changed "$unit"; then
            chmod 644 "$unit"; systemctl daemon-reload; restart=1
        fi
        systemctl enable -q mininova-haproxy.service
        if ((restart)); then
            systemctl restart mininova-haproxy.service
        else
            systemctl start mininova-haproxy.service
        fi
        return 0
    fi
    if pid=$(haproxy_pid "$cfg"); then
        ((restart)) || { log "haproxy already running (pid $pid)"; return 0; }
        kill "$pid" 2>/dev/null || true
    fi
    mkdir -p "$RUN"
    "$HAPROXY" -D -p "$RUN/haproxy.pid" -f "$cfg" || die "haproxy did not start ($cfg)"
    log "haproxy started (pid $(head -n1 "$RUN/haproxy.pid"), config $cfg)"
}
stop_haproxy() {  # CFG
    local pid
    if have_systemd; then
        systemctl stop mininova-haproxy.service 2>/dev/null || true
        return 0
    fi
    pid=$(haproxy_pid "$1") || { rm -f "$RUN/haproxy.pid"; return 0; }
    kill "$pid" 2>/dev/null || true
    rm -f "$RUN/haproxy.pid"
    log "haproxy stopped"
}

# alive PID, daemon_pid NAME
# shellcheck source=deploy/daemon-pid.sh
. "$DEPLOY/daemon-pid.sh"

stop_daemon() {  # NAME
    local pid
    if have_systemd; then
        systemctl stop "mininova-$1.service" 2>/dev/null || true
        return 0
    fi
    pid=$(daemon_pid "$1") || { rm -f "$RUN/$1.pid"; return 0; }
    kill "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 20))
    while alive "$pid"; do
        if ((SECONDS >= deadline)); then kill -9 "$pid" 2>/dev/null || true; break; fi
        sleep 0.1
    done
    rm -f "$RUN/$1.pid"
    log "mininova-$1 stopped"
}

# Start mininova-NAME unless it runs; restart it when RESTART=1 (its config or
# unit changed). Exactly one process per daemon and state dir. STARTED[NAME]=1
# when it did (re)start it: wait_service then waits for a new heartbeat.
declare -A STARTED=()
start_daemon() {  # NAME RESTART
    local name=$1 restart=$2 unit pid
    if have_systemd; then
        unit=$UNIT_DIR/mininova-$name.service
        if render_unit "$name" | write_if_changed "$unit"; then
            chmod 644 "$unit"
            systemctl daemon-reload
            restart=1
        fi
        systemctl enable -q "mininova-$name.service"
        if ((restart)); then
            systemctl restart "mininova-$name.service"
            STARTED[$name]=1
            log "mininova-$name (re)started by systemd"
        elif ! systemctl is-active -q "mininova-$name.service"; then
            systemctl start "mininova-$name.service"
            STARTED[$name]=1
            log "mininova-$name started by systemd"
        fi
        return 0
    fi
    if pid=$(daemon_pid "$name"); then
        ((restart)) || { log "mininova-$name already running (pid $pid)"; return 0; }
        stop_daemon "$name"
    fi
    mkdir -p "$RUN" "$LOGS"
    # setsid and the redirects: detached from the caller's session and pipes.
    setsid "$VENV/bin/mininova-$name" --config-file "$CONF" --log-file "$LOGS/$name.log" \
        </dev/null >>"$LOGS/$name.out" 2>&1 9>&- &
    pid=$!
    echo "$pid" > "$RUN/$name.pid"
    await_daemon "$name" || die "mininova-$name did not start: see $LOGS/$name.out"
    STARTED[$name]=1
    log "mininova-$name started (pid $pid, log $LOGS/$name.log)"
}

logs_hint() {  # NAME: where mininova-NAME logs
    if have_systemd; then echo "journalctl -u mininova-$1"; else echo "$LOGS/$1.log"; fi
}

# Wait (with a deadline) until the API answers, or a service of BINARY on HOST
# heartbeats as up: deploy/wait-service.py, run by the venv's python.
wait_api() {  # URL TIMEOUT
    "$VENV/bin/python" "$DEPLOY/wait-service.py" --api "$1" --timeout "$2" ||
        die "the API at $1 did not answer within $2 s"
}
wait_service() {  # URL TOKEN BINARY HOST TIMEOUT
    local fresh=()
    # Just (re)started: the heartbeat of a process killed moments ago is no proof.
    [[ ${STARTED[${3#mininova-}]:-0} == 1 ]] && fresh=(--new-heartbeat)
    MININOVA_TOKEN=$2 "$VENV/bin/python" "$DEPLOY/wait-service.py" --api "$1" \
        --binary "$3" --host "$4" --timeout "$5" "${fresh[@]}" ||
        die "$3 on $4 did not report as up at $1 within $5 s (logs: $(logs_hint "${3#mininova-}"))"
}
