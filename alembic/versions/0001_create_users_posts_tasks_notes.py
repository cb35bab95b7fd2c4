"""create users, posts, tasks and notes

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# MySQL/MariaDB: DATETIME(6) keeps microseconds (a keyset cursor needs the exact instant), and
# utf8mb4_bin compares text by code point, case-sensitively, like the other engines.
TIMESTAMP = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
TABLE_OPTIONS = {
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
    "mariadb_charset": "utf8mb4",
    "mariadb_collate": "utf8mb4_bin",
}


def _now() -> sa.TextClause | sa.sql.functions.Function[object]:
    dialect = op.get_context().dialect.name
    return sa.text("CURRENT_TIMESTAMP(6)") if dialect in ("mysql", "mariadb") else sa.func.now()


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=50), nullable=False),
        sa.Column("email", sa.String(length=120), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("image_file", sa.String(length=200), nullable=True),
        sa.Column("is_superuser", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_at", TIMESTAMP, server_default=_now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("email", name="uq_users_email"),
        sa.UniqueConstraint("username", name="uq_users_username"),
        **TABLE_OPTIONS,
    )
    op.create_table(
        "posts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=100), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("date_posted", TIMESTAMP, server_default=_now(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_posts_user_id_users", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_posts"),
        **TABLE_OPTIONS,
    )
    op.create_index("ix_posts_user_id", "posts", ["user_id"])
    op.create_table(
        "tasks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=255), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("created_at", TIMESTAMP, server_default=_now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name="fk_tasks_owner_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_tasks"),
        **TABLE_OPTIONS,
    )
    op.create_index("ix_tasks_owner_id", "tasks", ["owner_id"])
    op.create_table(
        "notes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", TIMESTAMP, server_default=_now(), nullable=False),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], name="fk_notes_task_id_tasks", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_notes"),
        **TABLE_OPTIONS,
    )
    op.create_index("ix_notes_task_id", "notes", ["task_id"])


def downgrade() -> None:
    # Dropping a table drops its indexes (MySQL refuses to drop an index a foreign key needs).
    op.drop_table("notes")
    op.drop_table("tasks")
    op.drop_table("posts")
    op.drop_table("users")
