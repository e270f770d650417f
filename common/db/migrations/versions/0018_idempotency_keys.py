"""Idempotency keys of POST /v1/vms: a key a project sent with a create
(``X-Idempotency-Key``) and the VM it created. The primary key (project,
key) is what makes two creates racing with one key on two API processes
create one VM: the second INSERT waits for the first's transaction and
finds the row.

Revision ID: 0018
Revises: 0017
"""
from alembic import op
import sqlalchemy as sa

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "idempotency_keys",
        sa.Column("project_id", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("instance_id", sa.String(36), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False))
    op.create_index("ix_idempotency_keys_created_at", "idempotency_keys", ["created_at"])


def downgrade():
    # Safe to run again: SQLite keeps this DDL when a later step of the same
    # downgrade fails (pysqlite commits it), as migration 0016 notes.
    if "idempotency_keys" in sa.inspect(op.get_bind()).get_table_names():
        op.drop_index("ix_idempotency_keys_created_at", table_name="idempotency_keys")
        op.drop_table("idempotency_keys")
