"""A live migration's progress on its migration record, as Nova's: bytes of
memory and disk processed, remaining and in total, as the source host last
reported them (NULL until it does, and for the other kinds of moves).

Revision ID: 0016
Revises: 0015
"""
from alembic import op
import sqlalchemy as sa

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

COLUMNS = ("memory_total", "memory_processed", "memory_remaining",
           "disk_total", "disk_processed", "disk_remaining")


# Plain ALTER TABLE ADD/DROP COLUMN (SQLite has both since 3.35), each only
# where needed: SQLite's DDL is not undone when a later step of the same
# downgrade fails (pysqlite commits it), so it must be safe to run again.
def _existing():
    return {c["name"] for c in sa.inspect(op.get_bind()).get_columns("migrations")}


def upgrade():
    have = _existing()
    for name in COLUMNS:
        if name not in have:
            op.add_column("migrations", sa.Column(name, sa.BigInteger(), nullable=True))


def downgrade():
    have = _existing()
    for name in COLUMNS:
        if name in have:
            op.drop_column("migrations", name)
