"""VM names unique per ``[api] unique_vm_name_scope``: each VM stores the
scope its name was made unique in (``name_scope``: its project, "" for
global, NULL for none) and one partial unique index on (name_scope, name)
among live VMs replaces the per-project one; names up to 255 characters, as
Nova's. Live VMs keep their names unique per project.

Revision ID: 0015
Revises: 0014
"""
from alembic import op
import sqlalchemy as sa

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

LIVE = sa.text("deleted_at IS NULL")


def upgrade():
    op.drop_index("uniq_instances_project_name_live", table_name="instances")
    with op.batch_alter_table("instances") as batch:
        batch.add_column(sa.Column("name_scope", sa.String(64), nullable=True))
        batch.alter_column("name", type_=sa.String(255), existing_type=sa.String(63),
                           existing_nullable=False)
    op.execute("UPDATE instances SET name_scope = project_id WHERE deleted_at IS NULL")
    op.create_index("uniq_instances_name_scope_live", "instances", ["name_scope", "name"],
                    unique=True, postgresql_where=LIVE, sqlite_where=LIVE)
    op.create_index("ix_instances_project_name", "instances", ["project_id", "name"])


def downgrade():
    """Refused while live VMs of a project share a name, or a name is
    longer than 63 characters (the old schema cannot hold them)."""
    bind = op.get_bind()
    repeated = bind.execute(sa.text(
        "SELECT name FROM instances WHERE deleted_at IS NULL GROUP BY project_id, name "
        "HAVING count(*) > 1")).scalars().all()
    long_names = bind.execute(sa.text(
        "SELECT name FROM instances WHERE length(name) > 63")).scalars().all()
    if repeated or long_names:
        raise RuntimeError("cannot downgrade: VM names %s repeat in a project or are longer "
                           "than 63 characters; rename or delete those VMs first"
                           % ", ".join(sorted(set(repeated + long_names))[:20]))
    op.drop_index("ix_instances_project_name", table_name="instances")
    op.drop_index("uniq_instances_name_scope_live", table_name="instances")
    with op.batch_alter_table("instances") as batch:
        batch.alter_column("name", type_=sa.String(63), existing_type=sa.String(255),
                           existing_nullable=False)
        batch.drop_column("name_scope")
    op.create_index("uniq_instances_project_name_live", "instances", ["project_id", "name"],
                    unique=True, postgresql_where=LIVE, sqlite_where=LIVE)
