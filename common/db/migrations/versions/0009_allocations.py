"""Allocations instead of claims: resources are held per (consumer, host), a
consumer being a VM or a migration, so that a move can hold its source and its
destination at once; and the ``migrations`` table. Every claim becomes its
VM's allocation on the claim's host; the hosts' sums do not change.

Revision ID: 0009
Revises: 0008
"""
from alembic import op
import sqlalchemy as sa

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "allocations",
        sa.Column("consumer_id", sa.String(36), primary_key=True),
        sa.Column("host", sa.String(255), primary_key=True),
        sa.Column("vcpus", sa.Integer, nullable=False),
        sa.Column("memory_mb", sa.Integer, nullable=False),
        sa.Column("disk_gb", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_allocations_host", "allocations", ["host"])
    op.execute("INSERT INTO allocations (consumer_id, host, vcpus, memory_mb, disk_gb, "
               "created_at) SELECT instance_id, host, vcpus, memory_mb, disk_gb, created_at "
               "FROM claims")
    op.drop_index("ix_claims_host", table_name="claims")
    op.drop_table("claims")
    op.create_table(
        "migrations",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("uuid", sa.String(36), nullable=False, unique=True),
        sa.Column("instance_id", sa.String(36), nullable=False),
        sa.Column("source_host", sa.String(255), nullable=True),
        sa.Column("dest_host", sa.String(255), nullable=True),
        sa.Column("migration_type", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("old_flavor_id", sa.String(36), nullable=True),
        sa.Column("new_flavor_id", sa.String(36), nullable=True),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_migrations_instance_id", "migrations", ["instance_id"])
    op.create_index("ix_migrations_source_host", "migrations", ["source_host"])
    op.create_index("ix_migrations_dest_host", "migrations", ["dest_host"])


def downgrade():
    """Back to one claim per VM: a VM's allocation on its own host (what
    migrations hold is lost with them)."""
    op.create_table(
        "claims",
        sa.Column("instance_id", sa.String(36), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("vcpus", sa.Integer, nullable=False),
        sa.Column("memory_mb", sa.Integer, nullable=False),
        sa.Column("disk_gb", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_claims_host", "claims", ["host"])
    op.execute("INSERT INTO claims (instance_id, host, vcpus, memory_mb, disk_gb, created_at) "
               "SELECT a.consumer_id, a.host, a.vcpus, a.memory_mb, a.disk_gb, a.created_at "
               "FROM allocations a JOIN instances i ON i.id = a.consumer_id "
               "AND i.host = a.host")
    op.drop_table("migrations")
    op.drop_table("allocations")
