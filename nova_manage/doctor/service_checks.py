"""Checks of what a host talks to: RabbitMQ, the database, the controller's
clock."""
import email.utils
import time
import urllib.error
import urllib.parse
import urllib.request

from nova_manage.doctor import fail, ok, warn

CLOCK_WARN = 1.0    # seconds of skew
CLOCK_FAIL = 30.0


def _redacted(url):
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(":" + parts.password + "@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


# -- RabbitMQ ----------------------------------------------------------------

def check_rabbitmq(transport_url, timeout=3.0):
    """Connect with ``[DEFAULT] transport_url`` as the daemons do: one result
    per broker of a failover list (rabbit://u:p@h1,u:p@h2/vhost), so that a
    cluster node down shows although the daemons still have the others."""
    from common.rpc import kombu_transport
    name = "rabbitmq"
    if transport_url.startswith("memory://"):
        return [warn(name, "transport_url is memory:// (in-process, for tests): daemons on "
                     "different processes cannot talk", "set [DEFAULT] transport_url = "
                     "rabbit://USER:PASSWORD@HOST:5672/")]
    try:
        urls = kombu_transport.parse_url(transport_url)
    except ValueError as exc:
        return [fail(name, "bad [DEFAULT] transport_url: %s" % exc,
                     "set [DEFAULT] transport_url = rabbit://USER:PASSWORD@HOST:5672/VHOST")]
    scheme = transport_url.split("://", 1)[0]
    results = []
    for url in urls:
        results += _check_broker(scheme + "://" + url.split("://", 1)[1], timeout)
    return results


def _check_broker(transport_url, timeout):
    """``transport_url``: one broker."""
    import amqp
    import kombu
    name = "rabbitmq"
    parts = urllib.parse.urlsplit(transport_url)
    user, vhost = parts.username or "guest", urllib.parse.unquote(parts.path[1:]) or "/"
    where = "%s:%s" % (parts.hostname, parts.port or 5672)
    conn = kombu.Connection("amqp://" + transport_url.split("://", 1)[1],
                            connect_timeout=timeout)
    try:
        conn.connect()
        version = conn.connection.server_properties.get("version", b"?")
    except amqp.exceptions.AccessRefused:
        return [fail(name, "authentication failed for user %s at %s" % (user, where),
                     "rabbitmqctl change_password %s PASSWORD (on the broker), or fix the "
                     "password in [DEFAULT] transport_url" % user)]
    except amqp.exceptions.NotAllowed as exc:
        return [fail(name, "user %s may not use vhost %s at %s: %s" % (
            user, vhost, where, getattr(exc, "reply_text", exc)),
            "rabbitmqctl add_vhost %s; rabbitmqctl set_permissions -p %s %s '.*' '.*' '.*'"
            % (vhost, vhost, user))]
    except (OSError, amqp.exceptions.AMQPError) as exc:
        return [fail(name, "unreachable at %s (%s): %s" % (where, _redacted(transport_url), exc),
                     "start RabbitMQ (deploy/start-controller-services.sh) or fix the host/port "
                     "in [DEFAULT] transport_url; check firewalls between this host and %s"
                     % where)]
    finally:
        conn.release()
    if isinstance(version, bytes):
        version = version.decode(errors="replace")
    return [ok(name, "connected to %s as %s, vhost %s (RabbitMQ %s)" % (where, user, vhost,
                                                                        version))]


# -- database ----------------------------------------------------------------

def check_database(url, timeout=3):
    """Connect with ``[database] connection``; the schema must be at head."""
    import sqlalchemy as sa
    name = "database"
    engine_args = {}
    if url.startswith("postgresql"):
        engine_args["connect_args"] = {"connect_timeout": timeout}
    shown = _redacted(url)
    try:
        engine = sa.create_engine(url, **engine_args)
    except Exception as exc:
        return [fail(name, "bad [database] connection %s: %s" % (shown, exc),
                     "fix [database] connection (postgresql+psycopg://USER:PASSWORD@HOST/DB)")]
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
            revision = _revision(conn)
    except sa.exc.DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0]
        if url.startswith("sqlite"):
            return [fail(name, "cannot open %s: %s" % (shown, reason),
                         "mininova-manage db sync (creates it), or set [database] connection "
                         "to PostgreSQL")]
        return [_database_failure(shown, reason)]
    except Exception as exc:
        return [fail(name, "cannot use %s: %s" % (shown, exc), "check [database] connection")]
    finally:
        engine.dispose()
    head = _head_revision()
    if revision != head:
        return [fail(name, "schema at revision %s, code expects %s" % (revision, head),
                     "mininova-manage db sync")]
    return [ok(name, "connected to %s, schema at %s" % (shown, head))]


def _database_failure(shown, reason):
    name = "database"
    user = urllib.parse.urlsplit(shown).username or "?"
    if "password authentication failed" in reason or (
            "role" in reason and "does not exist" in reason):
        return fail(name, "authentication failed for user %s at %s: %s" % (user, shown, reason),
                    "fix the user/password in [database] connection, or on the server: "
                    "ALTER ROLE %s PASSWORD '...' (deploy/start-controller-services.sh "
                    "creates it)" % user)
    if "database" in reason and "does not exist" in reason:
        return fail(name, "%s: %s" % (shown, reason),
                    "createdb the database (deploy/start-controller-services.sh), then "
                    "mininova-manage db sync")
    return fail(name, "unreachable: %s: %s" % (shown, reason),
                "start PostgreSQL (deploy/start-controller-services.sh) or fix host/port in "
                "[database] connection; check pg_hba.conf and firewalls")


def _revision(conn):
    from alembic.runtime.migration import MigrationContext
    return MigrationContext.configure(conn).get_current_revision()


def _head_revision():
    from alembic.script import ScriptDirectory
    from common.db import migration
    return ScriptDirectory.from_config(migration._config("sqlite://")).get_current_head()


# -- clock -------------------------------------------------------------------

def check_clock_http(url, timeout=3.0, warn_after=CLOCK_WARN, fail_after=CLOCK_FAIL):
    """This host's clock against the controller's: the ``Date`` header of the
    API's version document (no token needed). ``Date`` has 1 s resolution,
    so only the skew that remains certain after that is counted."""
    name = "clock"
    target = url.rstrip("/") + "/"
    request = urllib.request.Request(target, method="GET")
    before = time.time()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            date = response.headers.get("Date")
    except urllib.error.HTTPError as exc:  # an error page still has a Date
        date = exc.headers.get("Date")
    except (OSError, ValueError) as exc:
        return [fail(name, "cannot reach the controller at %s to compare clocks (image "
                     "downloads use it too): %s" % (target, getattr(exc, "reason", exc)),
                     "start mininova-api there, or set --controller-url / [compute] "
                     "image_api_url")]
    after = time.time()
    if not date:
        return [warn(name, "%s sent no Date header: clocks not compared" % target)]
    server = email.utils.parsedate_to_datetime(date).timestamp()
    # server's true time is in [server, server + 1); ours was in [before, after]
    low, high = server - after, server + 1 - before
    return [_skew_result("controller %s" % url, low, high, warn_after, fail_after)]


def check_clock_database(url, timeout=3, warn_after=CLOCK_WARN, fail_after=CLOCK_FAIL):
    """This host's clock against the PostgreSQL server's ``now()``."""
    import sqlalchemy as sa
    name = "clock"
    if not url.startswith("postgresql"):
        return []
    engine = sa.create_engine(url, connect_args={"connect_timeout": timeout})
    try:
        with engine.connect() as conn:
            before = time.time()
            server = conn.execute(sa.text("SELECT extract(epoch FROM clock_timestamp())")
                                  ).scalar()
            after = time.time()
    except sa.exc.DBAPIError:
        return []  # check_database says why
    finally:
        engine.dispose()
    server = float(server)
    return [_skew_result("the database server", server - after, server - before,
                         warn_after, fail_after)]


def _skew_result(against, low, high, warn_after, fail_after):
    """The skew is somewhere in [low, high]; judge the smallest it can be."""
    skew = 0.0 if low <= 0 <= high else (low if low > 0 else high)
    fix = ("synchronise both clocks with NTP (apt-get install chrony; chronyc tracking); "
           "heartbeats, service up/down and action timestamps depend on them")
    what = "clock %s %.1f s %s %s" % ("is" if abs(skew) < warn_after else "off by",
                                       abs(skew), "behind" if skew > 0 else "ahead of",
                                       against)
    if abs(skew) > fail_after:
        return fail("clock", what + " (over %.0f s: hosts are seen down)" % fail_after, fix)
    if abs(skew) > warn_after:
        return warn("clock", what, fix)
    return ok("clock", "within %.0f s of %s" % (warn_after, against))
