"""The tables, as SQLAlchemy models. Alembic migrations create them; `alembic check` keeps the two equal."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Dialect,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    false,
    func,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator, TypeEngine

_MYSQL = ("mysql", "mariadb")

# Stable constraint and index names, so migrations written today still match tomorrow's models.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamptz that always comes back as an aware UTC datetime.

    PostgreSQL stores the instant and returns it in the session's time zone; SQLite has no
    time zones and stores the UTC wall time naively. Either way the API returns `...+00:00`.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        # MySQL/MariaDB: DATETIME(6), naive UTC, with microseconds (keyset cursors need them).
        if dialect.name in _MYSQL:
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(self.impl_instance)

    @property
    def python_type(self) -> type[datetime]:
        return datetime

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass an aware datetime")
        if dialect.name in _MYSQL:
            return value.astimezone(UTC).replace(tzinfo=None)
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class TaskStatus(StrEnum):
    OPEN = "open"
    IN_PROGRESS = "in_progress"
    DONE = "done"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def table_of(model: type[Base]) -> Table:
    """The model's Core table: reads and writes use Core statements (no ORM objects on the hot path)."""
    return model.__table__  # type: ignore[return-value]


def _created_at() -> Any:
    return mapped_column(UtcDateTime, default=utcnow, server_default=func.now())


def _version() -> Any:
    """A row's edit count: 1 when written, one more with every change (db/writes.py), so a
    client can say which version it edited and a write over someone else's change is refused."""
    # The database's default only: a Python-side one would be a parameter of the compiled
    # INSERTs (schema/compiled/sql.py), which give only the columns they write.
    return mapped_column(Integer, server_default="1")


def _keyset_indexes(table: str, *keys: tuple[str, ...]) -> tuple[Index, ...]:
    """One index per (parent?, sort key, id) combination a keyset page walks in order.

    A page `WHERE (key, id) > (:key, :id) ORDER BY key, id LIMIT n` then reads n rows from the
    index wherever it starts, so the page after the millionth row costs what the first costs."""
    return tuple(Index(f"ix_{table}_{'_'.join(columns)}", *columns) for columns in keys)


# SQLite reuses the largest id after a delete unless a table is AUTOINCREMENT: a deleted account's
# still-valid token would then name the next person who registers, and a client's cached global
# ID another object. PostgreSQL's sequences and InnoDB's counters never go back.
NEVER_REUSE_IDS = {"sqlite_autoincrement": True}


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        *_keyset_indexes("users", ("created_at", "id")),
        # LIKE 'prefix%' can use an index only with byte-wise comparison; the unique index on
        # username follows the database's collation, which on PostgreSQL is rarely "C".
        Index(
            "ix_users_username_pattern",
            "username",
            postgresql_ops={"username": "varchar_pattern_ops"},
            info={"dialects": ("postgresql",)},
        ),
        NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(50), unique=True)
    email: Mapped[str] = mapped_column(String(120), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    image_file: Mapped[str | None] = mapped_column(String(200))
    is_superuser: Mapped[bool] = mapped_column(default=False, server_default=false())
    created_at: Mapped[datetime] = _created_at()

    # lazy="raise": relationships are loaded on purpose (by the data loaders), never by accident.
    # passive_deletes: the database's ON DELETE CASCADE removes the children.
    posts: Mapped[list[Post]] = relationship(
        back_populates="author", lazy="raise", cascade="all, delete-orphan", passive_deletes=True
    )
    tasks: Mapped[list[Task]] = relationship(
        back_populates="owner", lazy="raise", cascade="all, delete-orphan", passive_deletes=True
    )


class Post(Base):
    __tablename__ = "posts"
    __table_args__ = (
        *_keyset_indexes(
            "posts",
            ("date_posted", "id"),
            ("title", "id"),
            ("user_id", "id"),
            ("user_id", "date_posted", "id"),
            ("user_id", "title", "id"),
        ),
        NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(100))
    content: Mapped[str] = mapped_column(Text)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    date_posted: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, server_default=func.now())
    version: Mapped[int] = _version()

    author: Mapped[User] = relationship(back_populates="posts", lazy="raise")


class Task(Base):
    __tablename__ = "tasks"
    __table_args__ = (
        *_keyset_indexes(
            "tasks",
            ("created_at", "id"),
            ("title", "id"),
            ("status", "id"),
            ("owner_id", "id"),
            ("owner_id", "created_at", "id"),
            ("owner_id", "title", "id"),
            ("owner_id", "status", "id"),
        ),
        NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(255))
    # A plain varchar(50) holding 'open' | 'in_progress' | 'done' (no database enum type).
    status: Mapped[TaskStatus] = mapped_column(
        Enum(
            TaskStatus,
            native_enum=False,
            create_constraint=False,
            length=50,
            values_callable=lambda statuses: [status.value for status in statuses],
        ),
        default=TaskStatus.OPEN,
        server_default=TaskStatus.OPEN.value,
    )
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = _created_at()
    version: Mapped[int] = _version()

    owner: Mapped[User] = relationship(back_populates="tasks", lazy="raise")
    notes: Mapped[list[Note]] = relationship(
        back_populates="task", lazy="raise", cascade="all, delete-orphan", passive_deletes=True
    )


class Note(Base):
    __tablename__ = "notes"
    __table_args__ = (
        *_keyset_indexes("notes", ("task_id", "id"), ("task_id", "created_at", "id")),
        NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), index=True)
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _created_at()
    version: Mapped[int] = _version()

    task: Mapped[Task] = relationship(back_populates="notes", lazy="raise")


class Comment(Base):
    """A comment on a post: public like the post, gone with the post or with its author."""

    __tablename__ = "comments"
    __table_args__ = (
        *_keyset_indexes("comments", ("post_id", "id"), ("post_id", "created_at", "id"), ("user_id", "id")),
        NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _created_at()
    version: Mapped[int] = _version()


class RefreshToken(Base):
    """One refresh token, stored as a hash. Tokens of one login form a family: each refresh
    replaces the token with the next of its family, and showing a replaced token again revokes
    the family (it was stolen, or the client is confused; either way it must log in again)."""

    __tablename__ = "refresh_tokens"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    family: Mapped[str] = mapped_column(String(32), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = _created_at()
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    replaced_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class TokenRevocation(Base):
    """Every access token of `user_id` (or, with `login`, of that login) issued before
    `revoked_at` stopped working then: logout, a new password, a deleted account, changed rights.
    Kept as long as an access token lives; no foreign key, so it outlives a deleted user."""

    __tablename__ = "token_revocations"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(index=True)
    login: Mapped[str | None] = mapped_column(String(32))
    revoked_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class IdempotencyKey(Base):
    """A mutation's answer kept under the key its client sent with it (db/idempotency.py): a
    retry with the same key gets this answer instead of writing again. `answer` is null while
    the first request runs. Kept for IDEMPOTENCY_RETENTION_SECONDS."""

    __tablename__ = "idempotency_keys"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))  # the request's (db/idempotency.py)
    # The response body; MariaDB's TEXT holds 64 KB, less than a post's payload may take.
    answer: Mapped[str | None] = mapped_column(Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class EventOutbox(Base):
    """Committed changes on their way to subscribers (db/events.py): written in the mutation's
    own transaction, so an event exists exactly when its change does. On SQLite the table is the
    event log itself (ids follow commit order there); elsewhere a relay moves each row to the
    broker and deletes it."""

    __tablename__ = "event_outbox"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    topic: Mapped[str] = mapped_column(String(32))
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
