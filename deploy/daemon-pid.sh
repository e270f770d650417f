# shellcheck shell=bash
# Is mininova-NAME running? From its pid file; sourced by daemons.sh and
# role-common.sh, whose callers set RUN (the pid files' directory) and CONF.
#
# A pid file outlives its process: after a kill -9 the pid is a zombie until
# its parent (often PID 1) reaps it, and kill -0 succeeds on a zombie; later
# the pid may belong to another process. So "running" means: the process
# exists, is not a zombie, and runs mininova-NAME with this config.

alive() {  # PID: exists and is not a zombie
    local s
    s=$(sed -n 's/^State:[[:space:]]*\(.\).*/\1/p' "/proc/$1/status" 2>/dev/null) || return 1
    [[ -n $s && $s != Z ]]
}

daemon_pid() {  # NAME: the pid of our running mininova-NAME, if any
    local f=$RUN/$1.pid pid
    [[ -s $f ]] || return 1
    pid=$(<"$f")
    [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" || return 1
    tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null |
        grep -qF -- "mininova-$1 --config-file $CONF " || return 1
    echo "$pid"
}

# After `setsid mininova-NAME ... &` and writing its pid file: until it execs
# the daemon, the pid is a forked shell that daemon_pid does not recognise (a
# status would say stopped, a start would start a second one). Wait for the
# exec; false if it did not happen within 10 s.
await_daemon() {  # NAME
    local _
    for _ in $(seq 200); do daemon_pid "$1" >/dev/null && return 0; sleep 0.05; done
    return 1
}
