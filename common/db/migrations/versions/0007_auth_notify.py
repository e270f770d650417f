"""Revocations announced: table auth_epoch (one row, a counter) and, on
PostgreSQL, a trigger on tokens and users that, before every UPDATE, DELETE
or TRUNCATE statement, counts it in auth_epoch and sends NOTIFY
``mininova_auth`` with the new number. Both happen in the changing
transaction: NOTIFY is delivered only if it commits, and the counter's row
lock orders concurrent changes (taken first, so no deadlock between them).
Inserts revoke nothing and count nothing. See common/db/revocations.py.

Revision ID: 0007
Revises: 0006
"""
from alembic import op
import sqlalchemy as sa

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# Frozen here as this migration made them; common/db/revocations.py names them too.
CHANNEL = "mininova_auth"
FUNCTION = "mininova_auth_changed"
TABLES = ("tokens", "users")


def upgrade():
    epoch = op.create_table(
        "auth_epoch",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("n", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(epoch, [{"id": 1, "n": 0}])
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("""
CREATE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    epoch bigint;
BEGIN
    UPDATE auth_epoch SET n = n + 1 WHERE id = 1 RETURNING n INTO epoch;
    PERFORM pg_notify('%s', epoch::text);
    RETURN NULL;
END
$$""" % (FUNCTION, CHANNEL))
    for table in TABLES:
        op.execute("CREATE TRIGGER %s_notify_auth BEFORE UPDATE OR DELETE OR TRUNCATE ON %s "
                   "FOR EACH STATEMENT EXECUTE FUNCTION %s()" % (table, table, FUNCTION))


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute("DROP TRIGGER IF EXISTS %s_notify_auth ON %s" % (table, table))
        op.execute("DROP FUNCTION IF EXISTS %s()" % FUNCTION)
    op.drop_table("auth_epoch")
