"""Fixed IPs: a VM's IPv4 address is allocated in the database before it
boots (one row per address of a network ever handed out; see
common/db/fixed_ips.py). A live VM that already has an address (learned from
its DHCP lease) keeps it: it becomes that VM's row in the network
``[compute] network_name`` had by default, "mininova".

Revision ID: 0013
Revises: 0012
"""
from alembic import op
import sqlalchemy as sa

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "fixed_ips",
        sa.Column("network", sa.String(255), primary_key=True),
        sa.Column("address", sa.String(45), primary_key=True),
        sa.Column("instance_id", sa.String(36), nullable=True),
        sa.Column("host", sa.String(255), nullable=True),
        sa.Column("allocated_at", sa.DateTime, nullable=True),
        sa.Column("released_at", sa.DateTime, nullable=True),
        sa.UniqueConstraint("network", "instance_id", name="uniq_fixed_ips_network_instance"),
    )
    op.create_index("ix_fixed_ips_instance_id", "fixed_ips", ["instance_id"])
    # One row per address even if two live VMs share one (leases reused).
    op.execute("INSERT INTO fixed_ips (network, address, instance_id, host, allocated_at) "
               "SELECT 'mininova', ip_address, min(id), min(host), min(created_at) "
               "FROM instances WHERE deleted_at IS NULL AND ip_address IS NOT NULL "
               "GROUP BY ip_address")


def downgrade():
    # IF EXISTS: SQLite does not roll back the DDL of a downgrade that failed
    # further down the chain, and the retry comes through here again.
    op.execute("DROP TABLE IF EXISTS fixed_ips")  # its indexes go with it
