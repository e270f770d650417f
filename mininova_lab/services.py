"""The real RabbitMQ and PostgreSQL, reached as mininova reaches them.

Tests connect with mininova's own RabbitMQ user and PostgreSQL role, read from
the credentials file that deploy/start-controller-services.sh writes
(``MININOVA_CREDENTIALS``, default /etc/mininova/credentials), over TCP with a
password: never guest/guest, never trust authentication. The role may create
databases, so each test makes and drops its own. RabbitMQ vhosts are made with
``rabbitmqctl``, which targets the node that RABBITMQ_CONF_ENV_FILE names when
it is set (CI runs a node of its own)."""
import functools
import json
import os
import re
import subprocess
import urllib.parse

CREDENTIALS = os.environ.get("MININOVA_CREDENTIALS", "/etc/mininova/credentials")


class MissingService(RuntimeError):
    """A prerequisite of the real-service tests is missing; says which and how to get it."""


def parse_env_file(text):
    """KEY=VALUE lines (shell style, no quoting) -> dict."""
    values = {}
    for line in text.splitlines():
        line = line.strip()
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#") and key.isidentifier():
            values[key] = value
    return values


@functools.lru_cache(maxsize=None)
def credentials():
    try:
        with open(CREDENTIALS) as f:
            values = parse_env_file(f.read())
    except OSError as e:
        raise MissingService(
            "cannot read mininova's credentials (%s): run `make test`, whose set-up "
            "(deploy/start-controller-services.sh) creates them" % e) from None
    values.setdefault("RABBIT_PORT", "5672")
    values.setdefault("RABBIT_MANAGEMENT_PORT", "15672")
    values.setdefault("RABBIT_VHOST", "/")
    values.setdefault("DB_PORT", "5432")
    return values


def rabbit_port():
    return int(credentials()["RABBIT_PORT"])


def rabbit_management_port():
    return int(credentials()["RABBIT_MANAGEMENT_PORT"])


def db_port():
    return int(credentials()["DB_PORT"])


def rabbit_user():
    return credentials()["RABBIT_USER"]


def rabbit_url(vhost=None, host="127.0.0.1", port=None, password=None):
    """``rabbit://`` URL of mininova's RabbitMQ user for ``vhost`` (default:
    the one the set-up gave it)."""
    c = credentials()
    if vhost is None:
        vhost = c["RABBIT_VHOST"]
    if vhost == "/":
        vhost = ""
    return "rabbit://%s:%s@%s:%d/%s" % (
        urllib.parse.quote(c["RABBIT_USER"], safe=""),
        urllib.parse.quote(c["RABBIT_PASSWORD"] if password is None else password, safe=""),
        host, port or rabbit_port(), urllib.parse.quote(vhost, safe=""))


def db_url(name, host="127.0.0.1", password=None):
    """SQLAlchemy URL of database ``name`` as mininova's PostgreSQL role."""
    c = credentials()
    return "postgresql+psycopg://%s:%s@%s:%d/%s" % (
        urllib.parse.quote(c["DB_USER"], safe=""),
        urllib.parse.quote(c["DB_PASSWORD"] if password is None else password, safe=""),
        host, db_port(), name)


def _pg_admin_connection():
    import psycopg2
    c = credentials()
    conn = psycopg2.connect(dbname="postgres", user=c["DB_USER"], password=c["DB_PASSWORD"],
                            host="127.0.0.1", port=db_port(), connect_timeout=10)
    conn.autocommit = True
    return conn


def create_database(name):
    """A new empty database owned by mininova's role."""
    conn = _pg_admin_connection()
    try:
        with conn.cursor() as cur:
            cur.execute('CREATE DATABASE "%s"' % name)
    finally:
        conn.close()


def drop_database(name, attempts=12):
    """Drop a test database, ending its sessions first. Not ``WITH (FORCE)``:
    as a role that is not superuser, FORCE fails when an autovacuum worker
    is in the database (its process belongs to no role we are a member of),
    whereas a plain DROP tells autovacuum to leave. Our own role's sessions
    are ended by us; a plain DROP that still finds one retries."""
    import psycopg2
    conn = _pg_admin_connection()
    try:
        with conn.cursor() as cur:
            for attempt in range(attempts):
                cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = %s AND usename = current_user "
                            "AND pid <> pg_backend_pid()", (name,))
                try:
                    cur.execute('DROP DATABASE IF EXISTS "%s"' % name)
                    return
                except psycopg2.errors.ObjectInUse:
                    if attempt == attempts - 1:
                        raise
    finally:
        conn.close()


def pg_superuser(sql):
    """Run ``sql`` as PostgreSQL's superuser over the local socket (peer
    authentication, as on a stock Debian); for what mininova's role may not do
    (e.g. dropping roles a deploy test created)."""
    env = dict(os.environ, PGPORT=str(db_port()))
    return subprocess.run(["runuser", "-u", "postgres", "--", "psql", "-v", "ON_ERROR_STOP=1",
                           "-qtA", "-d", "postgres", "-c", sql],
                          capture_output=True, text=True, env=env, timeout=60)


def rabbitmqctl(*args, check=True, timeout=120):
    return subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True,
                          check=check, timeout=timeout)


def add_vhost(vhost):
    """A new vhost on which mininova's RabbitMQ user may do everything."""
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, rabbit_user(), ".*", ".*", ".*")


def delete_vhost(vhost):
    rabbitmqctl("delete_vhost", vhost, check=False)


def add_accounts(vhost, passwords, quorum=False, delivery_limit=None, ctl=None):
    """Role accounts ({user: password}, common.rpc.accounts) on ``vhost``, in one
    ``rabbitmqctl import_definitions`` (the passwords' hashes on its stdin).
    ``ctl``: a rabbitmqctl(*args, input=) of another node (private_services)."""
    from common.rpc import accounts
    if delivery_limit is None:
        delivery_limit = accounts.DEFAULT_DELIVERY_LIMIT
    text = json.dumps(accounts.definitions(vhost, passwords, quorum, delivery_limit))
    if ctl is None:
        subprocess.run(["rabbitmqctl", "-q", "import_definitions"], input=text, text=True,
                       capture_output=True, check=True, timeout=120)
    else:
        ctl("import_definitions", input=text)


def delete_users(users, ctl=None):
    """Delete broker ``users`` (names only on the command line) in one call."""
    if not users:
        return
    names = ",".join('<<"%s">>' % u for u in users if re.fullmatch(r"[A-Za-z0-9_.-]+", u))
    expr = "[rabbit_auth_backend_internal:delete_user(U, <<\"mininova-lab\">>) || U <- [%s]]." % names
    if ctl is None:
        rabbitmqctl("eval", expr, check=False)
    else:
        ctl("eval", expr)
