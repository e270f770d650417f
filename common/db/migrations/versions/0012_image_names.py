"""Image names may repeat, as in Glance: the unique index on live images'
names becomes a plain one (a /v1 lookup by a name several images carry
answers 409 with their ids).

Revision ID: 0012
Revises: 0011
"""
from alembic import op
import sqlalchemy as sa

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("images") as batch:
        batch.drop_index("uniq_images_name_live")
        batch.create_index("ix_images_name", ["name"])


def downgrade():
    """Refused while two live images share a name (the old index cannot hold them)."""
    repeated = op.get_bind().execute(sa.text(
        "SELECT name FROM images WHERE deleted_at IS NULL AND name IS NOT NULL "
        "GROUP BY name HAVING count(*) > 1")).scalars().all()
    if repeated:
        raise RuntimeError("cannot downgrade: several images are named %s; rename or delete "
                           "them first" % ", ".join(sorted(repeated)))
    with op.batch_alter_table("images") as batch:
        batch.drop_index("ix_images_name")
        batch.create_index("uniq_images_name_live", ["name"], unique=True,
                           postgresql_where=sa.text("deleted_at IS NULL"),
                           sqlite_where=sa.text("deleted_at IS NULL"))
