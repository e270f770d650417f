"""A VM's NIC: MAC chosen at create, IP learned from the DHCP lease.

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("instances") as batch:
        batch.add_column(sa.Column("mac_address", sa.String(17), nullable=True))
        batch.add_column(sa.Column("ip_address", sa.String(45), nullable=True))


def downgrade():
    with op.batch_alter_table("instances") as batch:
        batch.drop_column("ip_address")
        batch.drop_column("mac_address")
