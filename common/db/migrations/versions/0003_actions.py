"""Per-VM action timeline: instance actions and their events (Nova's
os-instance-actions). Rows outlive the VM, so a deleted VM's history stays
readable by id.

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "instance_actions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("instance_id", sa.String(36), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=True),
        sa.Column("start_time", sa.DateTime, nullable=False),
        sa.Column("finish_time", sa.DateTime, nullable=True),
        sa.Column("result", sa.String(16), nullable=True),
        sa.Column("message", sa.Text, nullable=True),
        sa.UniqueConstraint("instance_id", "request_id",
                            name="uniq_instance_actions_instance_request"),
    )
    op.create_index("ix_instance_actions_instance_id", "instance_actions", ["instance_id"])
    op.create_table(
        "instance_action_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("action_id", sa.Integer,
                  sa.ForeignKey("instance_actions.id", ondelete="CASCADE",
                                name="fk_instance_action_events_action_id"),
                  nullable=False),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("host", sa.String(255), nullable=True),
        sa.Column("start_time", sa.DateTime, nullable=False),
        sa.Column("finish_time", sa.DateTime, nullable=True),
        sa.Column("result", sa.String(16), nullable=True),
        sa.Column("details", sa.Text, nullable=True),
    )
    op.create_index("ix_instance_action_events_action_id", "instance_action_events",
                    ["action_id"])


def downgrade():
    op.drop_index("ix_instance_action_events_action_id", table_name="instance_action_events")
    op.drop_table("instance_action_events")
    op.drop_index("ix_instance_actions_instance_id", table_name="instance_actions")
    op.drop_table("instance_actions")
