"""What a compute host tells of its hypervisor besides its capacity: the
version (libvirt's number, e.g. 8000000 for 8.0.0) and the CPU (JSON), as
Nova's os-hypervisors show them.

Revision ID: 0010
Revises: 0009
"""
from alembic import op
import sqlalchemy as sa

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("compute_nodes") as batch:
        batch.add_column(sa.Column("hypervisor_version", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("cpu_info", sa.Text, nullable=True))


def downgrade():
    with op.batch_alter_table("compute_nodes") as batch:
        batch.drop_column("cpu_info")
        batch.drop_column("hypervisor_version")
