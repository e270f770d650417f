"""What the Nova v2.1 resources besides servers store: flavors' other sizes,
visibility and state, the projects a private flavor is shared with and its
extra specs; users' keypairs; quota classes (the ``default`` class overrides
the configured defaults). Quota resources may have longer names
(``server_group_members``).

Revision ID: 0008
Revises: ks01
"""
from alembic import op
import sqlalchemy as sa

revision = "0008"
down_revision = "ks01"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("flavors") as batch:
        batch.add_column(sa.Column("ephemeral_gb", sa.Integer, nullable=False,
                                   server_default="0"))
        batch.add_column(sa.Column("swap_mb", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("rxtx_factor", sa.Float, nullable=False,
                                   server_default="1.0"))
        batch.add_column(sa.Column("is_public", sa.Boolean, nullable=False,
                                   server_default=sa.true()))
        batch.add_column(sa.Column("disabled", sa.Boolean, nullable=False,
                                   server_default=sa.false()))
    op.create_table(
        "flavor_projects",
        sa.Column("flavor_id", sa.String(36),
                  sa.ForeignKey("flavors.id", ondelete="CASCADE",
                                name="fk_flavor_projects_flavor_id"), primary_key=True),
        sa.Column("project_id", sa.String(64), primary_key=True),
    )
    op.create_table(
        "flavor_extra_specs",
        sa.Column("flavor_id", sa.String(36),
                  sa.ForeignKey("flavors.id", ondelete="CASCADE",
                                name="fk_flavor_extra_specs_flavor_id"), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("value", sa.String(255), nullable=False),
    )
    op.create_table(
        "key_pairs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.String(64),
                  sa.ForeignKey("users.id", ondelete="CASCADE", name="fk_key_pairs_user_id"),
                  nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("public_key", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("user_id", "name", name="uniq_key_pairs_user_name"),
    )
    op.create_table(
        "quota_classes",
        sa.Column("class_name", sa.String(255), primary_key=True),
        sa.Column("resource", sa.String(64), primary_key=True),
        sa.Column("hard_limit", sa.Integer, nullable=False),
    )
    with op.batch_alter_table("quota_limits") as batch:
        batch.alter_column("resource", existing_type=sa.String(16), type_=sa.String(64),
                           existing_nullable=False)


def downgrade():
    op.execute("DELETE FROM quota_limits WHERE length(resource) > 16")
    with op.batch_alter_table("quota_limits") as batch:
        batch.alter_column("resource", existing_type=sa.String(64), type_=sa.String(16),
                           existing_nullable=False)
    for table in ("quota_classes", "key_pairs", "flavor_extra_specs", "flavor_projects"):
        op.drop_table(table)
    with op.batch_alter_table("flavors") as batch:
        for column in ("disabled", "is_public", "rxtx_factor", "swap_mb", "ephemeral_gb"):
            batch.drop_column(column)
