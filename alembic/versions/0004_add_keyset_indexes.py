"""add keyset indexes behind every ordering and filter

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = {
    "users": [("created_at", "id")],
    "posts": [
        ("date_posted", "id"),
        ("title", "id"),
        ("user_id", "id"),
        ("user_id", "date_posted", "id"),
        ("user_id", "title", "id"),
    ],
    "tasks": [
        ("created_at", "id"),
        ("title", "id"),
        ("status", "id"),
        ("owner_id", "id"),
        ("owner_id", "created_at", "id"),
        ("owner_id", "title", "id"),
        ("owner_id", "status", "id"),
    ],
    "notes": [("task_id", "id"), ("task_id", "created_at", "id")],
}


def _name(table: str, columns: tuple[str, ...]) -> str:
    return f"ix_{table}_{'_'.join(columns)}"


def upgrade() -> None:
    for table, indexes in INDEXES.items():
        for columns in indexes:
            op.create_index(_name(table, columns), table, list(columns))
    if op.get_bind().dialect.name == "postgresql":
        op.create_index(
            "ix_users_username_pattern",
            "users",
            ["username"],
            postgresql_ops={"username": "varchar_pattern_ops"},
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_users_username_pattern", table_name="users")
    for table, indexes in INDEXES.items():
        for columns in indexes:
            op.drop_index(_name(table, columns), table_name=table)
