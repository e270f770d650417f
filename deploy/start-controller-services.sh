#!/usr/bin/env bash
# Make sure RabbitMQ and PostgreSQL are installed and running (no systemd here:
# start them directly); create mininova's own credentials: a RabbitMQ user and a
# PostgreSQL role with generated passwords, kept in $CREDS (root only), so
# nothing but loopback tests depends on guest/guest or trust auth.
#   env MININOVA_DB            database, also the PostgreSQL role's name (mininova)
#   env MININOVA_CREDENTIALS   the credentials file (/etc/mininova/credentials)
#   env MININOVA_RABBIT_USER   RabbitMQ user written to a new credentials file (mininova)
#   env MININOVA_VHOST         RabbitMQ vhost, created if missing (/)
#   env MININOVA_RABBIT_MANAGEMENT  1 (default): enable the management plugin (web UI
#                              on :15672, where the queues and messages can be read;
#                              the user gets the "management" tag); empty or 0: don't
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
DB=${MININOVA_DB:-mininova}
CREDS=${MININOVA_CREDENTIALS:-/etc/mininova/credentials}
VHOST=${MININOVA_VHOST:-/}

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
if [[ ! -s $CREDS ]]; then
    mkdir -p "$(dirname "$CREDS")"
    umask 077
    {
        echo "RABBIT_USER=${MININOVA_RABBIT_USER:-mininova}"
        echo "RABBIT_PASSWORD=$(head -c 24 /dev/urandom | base64 | tr -dc A-Za-z0-9)"
        echo "DB_USER=$DB"
        echo "DB_PASSWORD=$(head -c 24 /dev/urandom | base64 | tr -dc A-Za-z0-9)"
    } > "$CREDS"
fi
# shellcheck disable=SC1090
. "$CREDS"

# Each rabbitmqctl call costs 1-5 s here: check with the fewest calls.
if ! rabbitmqctl -q authenticate_user "$RABBIT_USER" "$RABBIT_PASSWORD" >/dev/null 2>&1; then
    if grep -q "^$RABBIT_USER\b" <<<"$(rabbitmqctl -q list_users)"; then
        rabbitmqctl -q change_password "$RABBIT_USER" "$RABBIT_PASSWORD" >/dev/null
    else
        rabbitmqctl -q add_user "$RABBIT_USER" "$RABBIT_PASSWORD" >/dev/null
        tag_user=1  # the UI needs the "management" tag
    fi
fi
if [[ $VHOST != / ]] && ! grep -qxF "$VHOST" <<<"$(rabbitmqctl -q list_vhosts)"; then
    rabbitmqctl -q add_vhost "$VHOST" >/dev/null
fi
rabbitmqctl -q set_permissions -p "$VHOST" "$RABBIT_USER" ".*" ".*" ".*" >/dev/null
if [[ ${MININOVA_RABBIT_MANAGEMENT-1} == 1 ]]; then
    # rabbitmq-plugins enables it on the running broker (and in enabled_plugins
    # for the next start): no restart. Its port answering means it runs.
    if ! port_open 15672; then
        echo "start-controller-services.sh: enabling the RabbitMQ management plugin"
        rabbitmq-plugins enable rabbitmq_management >/dev/null
        deadline=$((SECONDS + 60))
        until port_open 15672; do
            ((SECONDS < deadline)) || { echo "management plugin not up after 60 s" >&2; exit 1; }
            sleep 0.5
        done
        tag_user=1  # the UI needs the "management" tag
    fi
    if [[ -n ${tag_user:-} ]]; then
        rabbitmqctl -q set_user_tags "$RABBIT_USER" management >/dev/null
    fi
fi

psql_() { runuser -u postgres -- psql -v ON_ERROR_STOP=1 -qtA -d postgres "$@"; }
if [[ -z $(psql_ -c "SELECT 1 FROM pg_roles WHERE rolname = '$DB_USER'") ]]; then
    psql_ -c "CREATE ROLE \"$DB_USER\" LOGIN CREATEDB"
fi
psql_ -c "ALTER ROLE \"$DB_USER\" PASSWORD '$DB_PASSWORD'"
if [[ -z $(psql_ -c "SELECT 1 FROM pg_database WHERE datname = '$DB'") ]]; then
    psql_ -c "CREATE DATABASE \"$DB\" OWNER \"$DB_USER\""
fi
echo "start-controller-services.sh: RabbitMQ (vhost $VHOST) and PostgreSQL (database $DB) ready;" \
     "credentials in $CREDS"
