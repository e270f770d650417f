"""Images as Glance v2 knows them: an owner (project) and a visibility, a
container format, protected and hidden flags, an update time; md5 and sha512
beside the sha256 (``checksum``, what compute hosts verify), the virtual
size; extra properties
and tags in tables of their own. An image is created before its data
(status ``queued``), so name, disk format, size, checksum and location may be
empty. Images registered before stay public, owned by nobody, ``bare``.

Revision ID: 0011
Revises: 0010
"""
from alembic import op
import sqlalchemy as sa

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("images") as batch:
        for column, kind in (("name", sa.String(255)), ("disk_format", sa.String(16)),
                             ("size", sa.BigInteger), ("checksum", sa.String(64)),
                             ("location", sa.Text)):
            batch.alter_column(column, existing_type=kind, nullable=True)
        batch.add_column(sa.Column("md5", sa.String(32), nullable=True))
        batch.add_column(sa.Column("sha512", sa.String(128), nullable=True))
        batch.add_column(sa.Column("virtual_size", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("owner", sa.String(64), nullable=True))
        batch.add_column(sa.Column("visibility", sa.String(16), nullable=False,
                                   server_default="public"))
        batch.add_column(sa.Column("container_format", sa.String(16), nullable=True,
                                   server_default="bare"))
        batch.add_column(sa.Column("protected", sa.Boolean, nullable=False,
                                   server_default=sa.false()))
        batch.add_column(sa.Column("os_hidden", sa.Boolean, nullable=False,
                                   server_default=sa.false()))
        batch.add_column(sa.Column("updated_at", sa.DateTime, nullable=True))
        batch.create_index("ix_images_owner", ["owner"])
    op.create_table(
        "image_properties",
        sa.Column("image_id", sa.String(36),
                  sa.ForeignKey("images.id", ondelete="CASCADE",
                                name="fk_image_properties_image_id"), primary_key=True),
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "image_tags",
        sa.Column("image_id", sa.String(36),
                  sa.ForeignKey("images.id", ondelete="CASCADE",
                                name="fk_image_tags_image_id"), primary_key=True),
        sa.Column("value", sa.String(255), primary_key=True),
    )


def downgrade():
    """Refused while an image has no data yet (the old schema needs its
    size, checksum and file)."""
    empty = op.get_bind().execute(sa.text(
        "SELECT id FROM images WHERE deleted_at IS NULL AND (location IS NULL OR name IS NULL "
        "OR disk_format IS NULL)")).scalars().all()
    if empty:
        raise RuntimeError("cannot downgrade: images %s have no data or no name; delete them "
                           "first" % ", ".join(sorted(empty)))
    op.drop_table("image_tags")
    op.drop_table("image_properties")
    op.execute("DELETE FROM images WHERE location IS NULL")  # deleted before any upload
    with op.batch_alter_table("images") as batch:
        batch.drop_index("ix_images_owner")
        for column in ("updated_at", "os_hidden", "protected", "container_format",
                       "visibility", "owner", "virtual_size", "sha512", "md5"):
            batch.drop_column(column)
        for column, kind in (("name", sa.String(255)), ("disk_format", sa.String(16)),
                             ("size", sa.BigInteger), ("checksum", sa.String(64)),
                             ("location", sa.Text)):
            batch.alter_column(column, existing_type=kind, nullable=False)
