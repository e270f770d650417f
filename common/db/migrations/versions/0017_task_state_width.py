"""A VM's task_state holds Nova's longest names ("resize_confirming" is 17
characters): 32 instead of 16.

Revision ID: 0017
Revises: 0016
"""
from alembic import op
import sqlalchemy as sa

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def _alter(length, before):
    with op.batch_alter_table("instances") as batch:
        batch.alter_column("task_state", type_=sa.String(length),
                           existing_type=sa.String(before), existing_nullable=True)


def upgrade():
    _alter(32, 16)


def downgrade():
    """Refused while a VM is in a task whose name is longer than 16."""
    bind = op.get_bind()
    long_tasks = bind.execute(sa.text(
        "SELECT id FROM instances WHERE length(task_state) > 16")).scalars().all()
    if long_tasks:
        raise RuntimeError("VMs %s are in a task named longer than 16 characters; let it "
                           "end first" % ", ".join(long_tasks))
    if op.get_bind().dialect.name != "sqlite":  # SQLite enforces no length: left wide
        _alter(16, 32)
