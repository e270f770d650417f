"""A project's quota usage in several rows (project_id, shard) whose sum is
what it holds, so that concurrent creates of one project need not all wait
for one row's lock (common/db/auth.py, USAGE_SHARDS). A project's existing
row becomes its shard 0; its other rows are made when a change first goes
to one of them.

Revision ID: 0019
Revises: 0018
"""
from alembic import op
import sqlalchemy as sa

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

COUNTS = ("instances", "cores", "ram")


def _create(name, sharded):
    columns = [sa.Column("project_id", sa.String(64), primary_key=True)]
    if sharded:
        columns.append(sa.Column("shard", sa.Integer, primary_key=True))
    columns += [sa.Column(c, sa.Integer, nullable=False) for c in COUNTS]
    op.create_table(name, *columns)


def _sharded(leftover):
    """Whether quota_usages has its shards; drops ``leftover``, a copy an
    earlier run of this step made and did not get to rename."""
    inspector = sa.inspect(op.get_bind())
    if leftover in inspector.get_table_names():
        op.drop_table(leftover)
    return any(c["name"] == "shard" for c in inspector.get_columns("quota_usages"))


def upgrade():
    if _sharded("quota_usages_sharded"):
        return
    _create("quota_usages_sharded", sharded=True)
    op.execute("INSERT INTO quota_usages_sharded (project_id, shard, instances, cores, ram) "
               "SELECT project_id, 0, instances, cores, ram FROM quota_usages")
    op.drop_table("quota_usages")
    op.rename_table("quota_usages_sharded", "quota_usages")


def downgrade():
    # Safe to run again: SQLite keeps this DDL when a later step of the same
    # downgrade fails (pysqlite commits it), as migration 0016 notes.
    if not _sharded("quota_usages_single"):
        return
    _create("quota_usages_single", sharded=False)
    op.execute("INSERT INTO quota_usages_single (project_id, instances, cores, ram) "
               "SELECT project_id, sum(instances), sum(cores), sum(ram) FROM quota_usages "
               "GROUP BY project_id")
    op.drop_table("quota_usages")
    op.rename_table("quota_usages_single", "quota_usages")
