"""Who may see and change which rows and fields: one SQL predicate per rule.

Every read and write applies these as WHERE clauses (or CASE for a hidden field), so the rule
lives here once and the compiled reads and writes inline it unchanged. Nothing else in the code
decides visibility with a Python `if`. A rule that looks at another table does it through
`_related`, whose subquery correlates everything but that table (its docstring says why).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, case, exists, false, null, or_, true

from db.models import Comment, Note, Post, Task, User, table_of
from db.where import Where, fixed, param

users, posts, tasks, notes, comments = (table_of(model) for model in (User, Post, Task, Note, Comment))


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is asking. Anonymous when id is None."""

    id: int | None = None
    is_superuser: bool = False

    @property
    def kind(self) -> str:
        """What shapes the rules' SQL; the id itself is only ever a bound value."""
        return "superuser" if self.is_superuser else "anonymous" if self.id is None else "user"


ANONYMOUS = Viewer()


VIEWER_ID = "viewer_id"


def viewer_params(viewer: Viewer) -> dict[str, Any]:
    return {VIEWER_ID: viewer.id}


def everyone(viewer: Viewer) -> Where:
    """Public rows: every viewer sees them."""
    return Where()


def _superuser_or_owner(
    viewer: Viewer,
    owner: ColumnElement[int],
    rule: str,
    *,
    also: Callable[[], ColumnElement[bool]] | None = None,
) -> Where:
    """Superusers see every row, anonymous viewers none, users the rows they own (`owner` is
    their id) and, given `also`, the rows where it holds (it may compare with VIEWER_ID)."""
    if viewer.is_superuser:
        return Where(shape=(rule, "superuser"))  # no condition
    if viewer.id is None:
        return fixed((rule, "anonymous"), false)

    def condition() -> ColumnElement[bool]:
        owned = owner == param(VIEWER_ID)
        return owned if also is None else or_(owned, also())

    return Where(shape=(rule, "owner"), params=viewer_params(viewer), makers=(condition,))


def may_see_owned_by(viewer: Viewer, owner_id: int) -> bool:
    """_superuser_or_owner for a row that no longer exists (a deleted task's event): the same rule,
    evaluated on the owner the event carries (tests/test_subscriptions.py checks they agree)."""
    return viewer.is_superuser or (viewer.id is not None and viewer.id == owner_id)


def can_see_task(viewer: Viewer) -> Where:
    """Tasks are private: their owner and superusers see them; nobody else learns they exist."""
    return _superuser_or_owner(viewer, tasks.c.owner_id, "can_see_task")


def can_change_task(viewer: Viewer) -> Where:
    """Whoever sees a task may change it (and its notes)."""
    return can_see_task(viewer)


def _related(table: Table, *conditions: ColumnElement[bool]) -> ColumnElement[bool]:
    """Whether a row of `table` meets the conditions. Only `table` is the subquery's own: every
    other table it names is the enclosing statement's, however deep the rule is nested. Left to
    SQLAlchemy, a table the nearest enclosing SELECT does not read (a compiled subscription's list
    of viewers, `v`) would be joined inside the subquery instead, and the rule would hold for
    one viewer if it held for any of them."""
    return exists().where(*conditions).correlate_except(table)


def can_see_note(viewer: Viewer) -> Where:
    """A note is visible exactly when its task is."""
    task_rule = can_see_task(viewer)
    if not task_rule.params:  # everything or nothing: no need to look at the task
        return task_rule
    return Where(
        shape=("can_see_note", *task_rule.shape),
        params=task_rule.params,
        makers=(lambda: _related(tasks, tasks.c.id == notes.c.task_id, *task_rule.clauses()),),
    )


def can_change_note(viewer: Viewer) -> Where:
    """Whoever sees a note may change it."""
    return can_see_note(viewer)


def can_see_email(viewer: Viewer) -> Where:
    return _superuser_or_owner(viewer, users.c.id, "can_see_email")


def can_change_post(viewer: Viewer) -> Where:
    return _superuser_or_owner(viewer, posts.c.user_id, "can_change_post")


@dataclass(frozen=True, slots=True)
class Guard:
    """Who may write a table's rows: those who see a row (`visible`) and, of them, those `allowed`.
    `kind` names the row in a NotFound, `denied` says why a row the viewer sees may not be
    changed (db/writes.py applies it)."""

    kind: str
    table: Table
    visible: Callable[[Viewer], Where]
    allowed: Callable[[Viewer], Where]
    denied: str


def can_change_comment(viewer: Viewer) -> Where:
    return _superuser_or_owner(viewer, comments.c.user_id, "can_change_comment")


def _on_their_post() -> ColumnElement[bool]:
    return _related(posts, posts.c.id == comments.c.post_id, posts.c.user_id == param(VIEWER_ID))


def can_delete_comment(viewer: Viewer) -> Where:
    """Whoever may change a comment, and the author of the post it is on."""
    return _superuser_or_owner(viewer, comments.c.user_id, "can_delete_comment", also=_on_their_post)


def only_where(rule: Where, column: ColumnElement[Any]) -> ColumnElement[Any]:
    """The column's value where the rule holds, NULL elsewhere (a field hidden row by row)."""
    clauses = rule.clauses()
    if not clauses:
        return column
    return case((and_(*clauses), column), else_=null())


def holds(rule: Where) -> ColumnElement[bool]:
    """The rule as one SQL boolean (true when it has no condition)."""
    clauses = rule.clauses()
    return and_(*clauses) if clauses else true()


# Who may write which rows (db/writes.py).
POSTS = Guard(
    "post", posts, everyone, can_change_post, "Only the author of a post (or a superuser) may change it."
)
TASKS = Guard("task", tasks, can_see_task, can_change_task, "You may not change this task.")
NOTES = Guard("note", notes, can_see_note, can_change_note, "You may not change this note.")
COMMENTS = Guard("comment", comments, everyone, can_change_comment, "Only its author may change a comment.")
COMMENT_DELETES = Guard(
    "comment", comments, everyone, can_delete_comment, "Only its or its post's author may delete it."
)
