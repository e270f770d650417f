"""Identity: users get a password hash and an ``enabled`` flag; roles move
from ``users.role`` to ``role_assignments`` (user, project, role: a user may
hold roles in several projects), each user keeping the role it had in its
project; tokens get a scope (``project_id``), Keystone's methods and audit
ids, and an index on their user.

On PostgreSQL, role_assignments announces its changes like tokens and users
(migration 0007, common/db/revocations.py), inserts included: a role added or
taken away changes what a cached token may do.

Revision ID: ks01
Revises: 0007
"""
from alembic import op
import sqlalchemy as sa

revision = "ks01"
down_revision = "0007"
branch_labels = None
depends_on = None

# Frozen as 0007 made it.
FUNCTION = "mininova_auth_changed"


def upgrade():
    op.create_table(
        "role_assignments",
        sa.Column("user_id", sa.String(64),
                  sa.ForeignKey("users.id", ondelete="CASCADE",
                                name="fk_role_assignments_user_id"), primary_key=True),
        sa.Column("project_id", sa.String(64),
                  sa.ForeignKey("projects.id", name="fk_role_assignments_project_id"),
                  primary_key=True),
        sa.Column("role", sa.String(16), primary_key=True),
    )
    op.execute("INSERT INTO role_assignments (user_id, project_id, role) "
               "SELECT id, project_id, role FROM users")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("role")
        batch.add_column(sa.Column("password_hash", sa.String(255), nullable=True))
        batch.add_column(sa.Column("enabled", sa.Boolean, nullable=False,
                                   server_default=sa.true()))
    with op.batch_alter_table("tokens") as batch:
        batch.add_column(sa.Column("project_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("methods", sa.String(64), nullable=True))
        batch.add_column(sa.Column("audit_id", sa.String(32), nullable=True))
        batch.add_column(sa.Column("audit_chain_id", sa.String(32), nullable=True))
        batch.create_foreign_key("fk_tokens_project_id", "projects", ["project_id"], ["id"])
        batch.create_index("ix_tokens_user_id", ["user_id"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE TRIGGER role_assignments_notify_auth BEFORE INSERT OR UPDATE OR "
                   "DELETE OR TRUNCATE ON role_assignments FOR EACH STATEMENT EXECUTE "
                   "FUNCTION %s()" % FUNCTION)


def downgrade():
    """Back to one role per user: the highest it holds in its own project.
    Refused while a user holds neither member nor admin there (a reader):
    the old schema cannot say what it may do, and member would be more."""
    readers = op.get_bind().execute(sa.text(
        "SELECT name FROM users u WHERE NOT EXISTS (SELECT 1 FROM role_assignments r "
        "WHERE r.user_id = u.id AND r.project_id = u.project_id "
        "AND r.role IN ('member', 'admin'))")).scalars().all()
    if readers:
        raise RuntimeError("cannot downgrade: users %s hold no member or admin role in their "
                           "project; give them one or delete them first"
                           % ", ".join(sorted(readers)))
    with op.batch_alter_table("tokens") as batch:
        batch.drop_index("ix_tokens_user_id")
        batch.drop_constraint("fk_tokens_project_id", type_="foreignkey")
        for column in ("audit_chain_id", "audit_id", "methods", "project_id"):
            batch.drop_column(column)
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("role", sa.String(16), nullable=False,
                                   server_default="member"))
    op.execute("UPDATE users SET role = 'admin' WHERE EXISTS (SELECT 1 FROM role_assignments "
               "r WHERE r.user_id = users.id AND r.project_id = users.project_id "
               "AND r.role = 'admin')")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("enabled")
        batch.drop_column("password_hash")
        batch.alter_column("role", server_default=None)
    op.drop_table("role_assignments")
