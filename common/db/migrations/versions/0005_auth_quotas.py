"""Projects, users and tokens (secrets stored hashed); quota limits and usage.

Revision ID: 0005
Revises: 0004
"""
from alembic import op
import sqlalchemy as sa

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "projects",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("project_id", sa.String(64), sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "tokens",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("secret_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("user_id", sa.String(64), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("expires_at", sa.DateTime, nullable=True),
    )
    op.create_table(
        "quota_limits",
        sa.Column("project_id", sa.String(64), primary_key=True),
        sa.Column("resource", sa.String(16), primary_key=True),
        sa.Column("hard_limit", sa.Integer, nullable=False),
    )
    op.create_table(
        "quota_usages",
        sa.Column("project_id", sa.String(64), primary_key=True),
        sa.Column("instances", sa.Integer, nullable=False),
        sa.Column("cores", sa.Integer, nullable=False),
        sa.Column("ram", sa.Integer, nullable=False),
    )


def downgrade():
    for table in ("quota_usages", "quota_limits", "tokens", "users", "projects"):
        op.drop_table(table)
