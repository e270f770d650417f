"""compute_nodes.generation: bumped by every claim and release on the host
(like Placement's resource provider generation), so that a scheduler knows
whether a snapshot of the host already contains one of its own claims.

Revision ID: 0006
Revises: 0005
"""
from alembic import op
import sqlalchemy as sa

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("compute_nodes") as batch:
        batch.add_column(sa.Column("generation", sa.Integer, nullable=False,
                                   server_default="0"))


def downgrade():
    with op.batch_alter_table("compute_nodes") as batch:
        batch.drop_column("generation")
