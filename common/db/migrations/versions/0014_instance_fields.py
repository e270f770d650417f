"""Nova's server fields on VMs: metadata (a key/value table), the keypair's
name and public key, user_data, access IPs, disk_config and the lock.

Revision ID: 0014
Revises: 0013
"""
from alembic import op
import sqlalchemy as sa

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("instances") as batch:
        batch.add_column(sa.Column("key_name", sa.String(255), nullable=True))
        batch.add_column(sa.Column("key_data", sa.Text, nullable=True))
        batch.add_column(sa.Column("user_data", sa.Text, nullable=True))
        batch.add_column(sa.Column("access_ipv4", sa.String(15), nullable=True))
        batch.add_column(sa.Column("access_ipv6", sa.String(39), nullable=True))
        batch.add_column(sa.Column("disk_config", sa.String(8), nullable=False,
                                   server_default="MANUAL"))
        batch.add_column(sa.Column("locked", sa.Boolean, nullable=False,
                                   server_default=sa.false()))
        batch.add_column(sa.Column("locked_by", sa.String(16), nullable=True))
    op.create_table(
        "instance_metadata",
        sa.Column("instance_id", sa.String(36),
                  sa.ForeignKey("instances.id", ondelete="CASCADE",
                                name="fk_instance_metadata_instance_id"), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("value", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("instance_id", "key"),
    )


def downgrade():
    op.drop_table("instance_metadata")
    with op.batch_alter_table("instances") as batch:
        for column in ("locked_by", "locked", "disk_config", "access_ipv6", "access_ipv4",
                       "user_data", "key_data", "key_name"):
            batch.drop_column(column)
