#!/usr/bin/env bash
# What `make test` needs beyond a mininova host (deploy/install-host.sh):
# the shellcheck linter (for the set-up scripts), ruby (`ruby -wc Vagrantfile`) and
# systemd-analyze (the units are verified). Installs only what is missing.
set -euo pipefail
[[ $(id -u) -eq 0 ]] || { echo "install-test-tools.sh: must run as root" >&2; exit 1; }
todo=()
command -v shellcheck >/dev/null || todo+=(shellcheck)
command -v ruby >/dev/null || todo+=(ruby)
command -v systemd-analyze >/dev/null || todo+=(systemd)
if ((${#todo[@]})); then
    echo "install-test-tools.sh: installing ${todo[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        -o Dpkg::Options::=--force-confold "${todo[@]}"
fi
echo "install-test-tools.sh: test tools ready"
