"""ids are never reused (SQLite AUTOINCREMENT); token_revocations

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Tables whose ids reach clients (global IDs) or tokens (a user's id is a token's subject).
TABLES = ("users", "posts", "tasks", "notes", "refresh_tokens")
TIMESTAMP = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
TABLE_OPTIONS = {
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
    "mariadb_charset": "utf8mb4",
    "mariadb_collate": "utf8mb4_bin",
}


def _autoincrement(on: bool) -> None:
    """SQLite reuses max(id) + 1 after a delete unless a table is AUTOINCREMENT, which only a new
    table can be: each is rebuilt (batch mode copies the rows, ids included). PostgreSQL's
    sequences and InnoDB's persistent counters (MariaDB 10.2.4+) never go back."""
    if op.get_context().dialect.name != "sqlite":
        return
    for table in TABLES:
        with op.batch_alter_table(table, recreate="always", table_kwargs={"sqlite_autoincrement": on}):
            pass


def upgrade() -> None:
    _autoincrement(True)
    op.create_table(
        "token_revocations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("login", sa.String(length=32), nullable=True),
        sa.Column("revoked_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_token_revocations"),
        sqlite_autoincrement=True,
        **TABLE_OPTIONS,
    )
    op.create_index("ix_token_revocations_user_id", "token_revocations", ["user_id"])
    op.create_index("ix_token_revocations_revoked_at", "token_revocations", ["revoked_at"])


def downgrade() -> None:
    op.drop_table("token_revocations")
    _autoincrement(False)
