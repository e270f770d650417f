#!/usr/bin/env bash
# Make sure RabbitMQ and PostgreSQL are installed and running (no systemd here:
# start them directly); create mininova's own credentials: a RabbitMQ user and a
# PostgreSQL role with generated passwords, kept in $CREDS (root only), so
# nothing depends on guest/guest or trust auth.
#   env MININOVA_DB            database, also the PostgreSQL role's name (mininova)
#   env MININOVA_CREDENTIALS   the credentials file (/etc/mininova/credentials)
#   env MININOVA_RABBIT_USER   RabbitMQ user written to a new credentials file (mininova)
#   env MININOVA_VHOST         RabbitMQ vhost, created if missing (/)
#   env MININOVA_RABBIT_MANAGEMENT  1 (default): enable the management plugin (web UI
#                              where the queues and messages can be read; the user
#                              gets the "management" tag); empty or 0: don't
#   env MININOVA_RABBIT_PORT, MININOVA_RABBIT_MANAGEMENT_PORT  (5672, 15672)
#   env MININOVA_DB_PORT       (5432)
#   env MININOVA_PG_CLUSTER    "VERSION NAME" of the cluster to start when the port
#                              is closed (the first version's "main")
# RabbitMQ's own RABBITMQ_CONF_ENV_FILE selects another broker node: CI runs a
# node and a PostgreSQL cluster of its own, so that every run takes the paths of
# a first install (.ci/run).
set -euo pipefail
# Whatever the caller's umask: files made here for the broker (rabbitmq-plugins
# writes enabled_plugins as root) must stay readable by the broker's own user.
umask 022
export DEBIAN_FRONTEND=noninteractive
DB=${MININOVA_DB:-mininova}
CREDS=${MININOVA_CREDENTIALS:-/etc/mininova/credentials}
VHOST=${MININOVA_VHOST:-/}
AMQP_PORT=${MININOVA_RABBIT_PORT:-5672}
MGMT_PORT=${MININOVA_RABBIT_MANAGEMENT_PORT:-15672}
PG_PORT=${MININOVA_DB_PORT:-5432}
PROG=start-controller-services.sh

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
random_password() { head -c 24 /dev/urandom | base64 | tr -dc A-Za-z0-9; }

need=()
command -v rabbitmq-server >/dev/null || need+=(rabbitmq-server)
command -v pg_ctlcluster >/dev/null || need+=(postgresql)
if ((${#need[@]})); then
    apt-get update -q
    apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confold "${need[@]}"
fi

if ! port_open "$AMQP_PORT"; then
    echo "$PROG: starting RabbitMQ"
    rabbitmq-server -detached
fi
if ! port_open "$PG_PORT"; then
    cluster=${MININOVA_PG_CLUSTER:-"$(find /etc/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | head -n1) main"}
    echo "$PROG: starting PostgreSQL ($cluster)"
    # shellcheck disable=SC2086  # "VERSION NAME": two words on purpose
    pg_ctlcluster --skip-systemctl-redirect $cluster start
fi
deadline=$((SECONDS + 60))
until port_open "$AMQP_PORT" && port_open "$PG_PORT"; do
    ((SECONDS < deadline)) || { echo "RabbitMQ/PostgreSQL not up after 60 s" >&2; exit 1; }
    sleep 0.5
done

if [[ ! -s $CREDS ]]; then
    mkdir -p "$(dirname "$CREDS")"
    echo "$PROG: writing new credentials to $CREDS"
    # The umask stays inside the subshell: files written later by this script
    # (RabbitMQ's enabled_plugins) must stay readable by the broker's user.
    (
        umask 077
        cat > "$CREDS" <<CREDS
RABBIT_USER=${MININOVA_RABBIT_USER:-mininova}
RABBIT_PASSWORD=$(random_password)
RABBIT_PORT=$AMQP_PORT
RABBIT_MANAGEMENT_PORT=$MGMT_PORT
RABBIT_VHOST=$VHOST
DB_USER=$DB
DB_PASSWORD=$(random_password)
DB_PORT=$PG_PORT
CREDS
    )
fi
# shellcheck disable=SC1090
. "$CREDS"

# Each rabbitmqctl call costs 1-5 s here: check with the fewest calls. Passwords
# go on stdin, never on a command line (where ps shows them).
if ! rabbitmqctl -q authenticate_user "$RABBIT_USER" <<<"$RABBIT_PASSWORD" >/dev/null 2>&1; then
    if grep -q "^$RABBIT_USER\b" <<<"$(rabbitmqctl -q list_users)"; then
        echo "$PROG: setting the password of RabbitMQ user $RABBIT_USER"
        rabbitmqctl -q change_password "$RABBIT_USER" <<<"$RABBIT_PASSWORD" >/dev/null
    else
        echo "$PROG: creating RabbitMQ user $RABBIT_USER"
        rabbitmqctl -q add_user "$RABBIT_USER" <<<"$RABBIT_PASSWORD" >/dev/null
        tag_user=1  # the UI needs the "management" tag
    fi
fi
if [[ $VHOST != / ]] && ! grep -qxF "$VHOST" <<<"$(rabbitmqctl -q list_vhosts)"; then
    echo "$PROG: creating RabbitMQ vhost $VHOST"
    rabbitmqctl -q add_vhost "$VHOST" >/dev/null
fi
rabbitmqctl -q set_permissions -p "$VHOST" "$RABBIT_USER" ".*" ".*" ".*" >/dev/null
if [[ ${MININOVA_RABBIT_MANAGEMENT-1} == 1 ]]; then
    # rabbitmq-plugins enables it on the running broker (and in enabled_plugins
    # for the next start): no restart. Its port answering means it runs.
    if ! port_open "$MGMT_PORT"; then
        echo "$PROG: enabling the RabbitMQ management plugin"
        rabbitmq-plugins -q enable rabbitmq_management >/dev/null
        deadline=$((SECONDS + 60))
        until port_open "$MGMT_PORT"; do
            ((SECONDS < deadline)) || { echo "management plugin not up after 60 s" >&2; exit 1; }
            sleep 0.5
        done
        tag_user=1  # the UI needs the "management" tag
    fi
    if [[ -n ${tag_user:-} ]]; then
        rabbitmqctl -q set_user_tags "$RABBIT_USER" management >/dev/null
    fi
fi

# Admin work over the local socket as the postgres user (peer authentication on
# a stock Debian); mininova itself connects over TCP with its password.
psql_() { PGPORT=$PG_PORT runuser -u postgres -- psql -v ON_ERROR_STOP=1 -qtA -d postgres "$@"; }
if [[ -z $(psql_ -c "SELECT 1 FROM pg_roles WHERE rolname = '$DB_USER'") ]]; then
    echo "$PROG: creating PostgreSQL role $DB_USER"
    psql_ -c "CREATE ROLE \"$DB_USER\" LOGIN CREATEDB"
fi
# On stdin, not in psql's argument list.
psql_ <<<"ALTER ROLE \"$DB_USER\" PASSWORD '$DB_PASSWORD'"
if [[ -z $(psql_ -c "SELECT 1 FROM pg_database WHERE datname = '$DB'") ]]; then
    echo "$PROG: creating PostgreSQL database $DB"
    psql_ -c "CREATE DATABASE \"$DB\" OWNER \"$DB_USER\""
fi
echo "$PROG: RabbitMQ (port $AMQP_PORT, vhost $VHOST) and PostgreSQL (port $PG_PORT," \
     "database $DB) ready; credentials in $CREDS"
