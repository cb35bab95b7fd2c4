"""add comments

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
TABLE_OPTIONS = {
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
    "mariadb_charset": "utf8mb4",
    "mariadb_collate": "utf8mb4_bin",
}
INDEXES = [("post_id", "id"), ("post_id", "created_at", "id"), ("user_id", "id")]


def _now() -> sa.TextClause | sa.sql.functions.Function[object]:
    dialect = op.get_context().dialect.name
    return sa.text("CURRENT_TIMESTAMP(6)") if dialect in ("mysql", "mariadb") else sa.func.now()


def upgrade() -> None:
    op.create_table(
        "comments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("post_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", TIMESTAMP, server_default=_now(), nullable=False),
        sa.ForeignKeyConstraint(["post_id"], ["posts.id"], name="fk_comments_post_id_posts", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_comments_user_id_users", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_comments"),
        sqlite_autoincrement=True,
        **TABLE_OPTIONS,
    )
    for columns in INDEXES:
        op.create_index(f"ix_comments_{'_'.join(columns)}", "comments", list(columns))


def downgrade() -> None:
    op.drop_table("comments")
