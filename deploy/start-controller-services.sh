#!/usr/bin/env bash
# Make sure RabbitMQ and PostgreSQL are installed and running (no systemd here:
# start them directly), and that the role and database $MININOVA_DB exist
# (password = name; a multi-host deploy sets real credentials).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
DB=${MININOVA_DB:-mininova}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

need=()
command -v rabbitmq-server >/dev/null || need+=(rabbitmq-server)
command -v pg_ctlcluster >/dev/null || need+=(postgresql)
if ((${#need[@]})); then
    apt-get update -q
    apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confold "${need[@]}"
fi

if ! port_open 5672; then
    echo "start-controller-services.sh: starting RabbitMQ"
    rabbitmq-server -detached
fi
if ! port_open 5432; then
    echo "start-controller-services.sh: starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
fi
deadline=$((SECONDS + 60))
until port_open 5672 && port_open 5432; do
    ((SECONDS < deadline)) || { echo "RabbitMQ/PostgreSQL not up after 60 s" >&2; exit 1; }
    sleep 0.5
done

# Admin work over the local socket as the postgres user (peer auth on a
# stock Debian); mininova itself connects over TCP with a password.
psql_() { runuser -u postgres -- psql -v ON_ERROR_STOP=1 -qtA -d postgres "$@"; }
if [[ -z $(psql_ -c "SELECT 1 FROM pg_roles WHERE rolname = '$DB'") ]]; then
    psql_ -c "CREATE ROLE \"$DB\" LOGIN PASSWORD '$DB' CREATEDB"
fi
if [[ -z $(psql_ -c "SELECT 1 FROM pg_database WHERE datname = '$DB'") ]]; then
    psql_ -c "CREATE DATABASE \"$DB\" OWNER \"$DB\""
fi
echo "start-controller-services.sh: RabbitMQ and PostgreSQL (database $DB) ready"
