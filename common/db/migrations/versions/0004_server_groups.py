"""Server groups, a VM's group, and the hosts a build already failed on.

Revision ID: 0004
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "server_groups",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("policy", sa.String(32), nullable=False),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("deleted_at", sa.DateTime, nullable=True),
    )
    with op.batch_alter_table("instances") as batch:
        batch.add_column(sa.Column("group_id", sa.String(36), nullable=True))
        batch.add_column(sa.Column("sched_attempts", sa.Text, nullable=True))
        batch.create_index("ix_instances_group_id", ["group_id"])


def downgrade():
    with op.batch_alter_table("instances") as batch:
        batch.drop_index("ix_instances_group_id")
        batch.drop_column("sched_attempts")
        batch.drop_column("group_id")
    op.drop_table("server_groups")
