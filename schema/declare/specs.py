"""What a declared field says about itself, kept in its StrawberryField's metadata under SPEC.

The planner of compiled reads, the resolvers' look-ahead and loaders, and the tests all read
these; nothing else says which column a field prints or which link a relation follows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement
from strawberry import UNSET
from strawberry.types.field import StrawberryField

from db.visibility import Viewer
from db.where import Where

SPEC = "quill"  # the metadata key
BY = "by"  # a lookup's @oneOf argument

Rule = Callable[[Viewer], Where]


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    """A scalar read from a column of the type's table (null where `rule` does not hold).
    `column` None: the field's own name (@node fills it in)."""

    column: str | None
    rule: Rule | None = None


@dataclass(frozen=True, slots=True)
class ExpressionSpec:
    """A scalar computed in SQL from columns of the row (both read paths select it, labelled
    by the field's name, which @node fills in)."""

    label: str | None
    make: Callable[..., ColumnElement[Any]]
    reads: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ToOneSpec:
    """An object whose id this type's `link` column holds."""

    link: str


@dataclass(frozen=True, slots=True)
class ConnectionSpec:
    """A page of the node type's rows whose `link` column holds the parent's id (all rows at the root)."""

    link: str | None


@dataclass(frozen=True, slots=True)
class Key:
    """An argument of a lookup: a global ID (`column` None) or a unique column's value."""

    argument: str
    column: str | None = None
    type: Any = None
    normalize: Callable[[Any], Any] | None = None


@dataclass(frozen=True, slots=True)
class LookupSpec:
    """One row by exactly one of `keys`; null when there is none the viewer may see."""

    keys: tuple[Key, ...]
    # With several keys, the argument `by` (a @oneOf input, one field per key) names the row too:
    # `user(by: {username: "ada"})`. The flat arguments stay, deprecated.
    one_of: bool = False

    def given(self, arguments: Mapping[str, Any]) -> list[tuple[Key, Any]]:
        """The keys the arguments give a value for, flat or inside `by` (the resolvers' and the
        compiled planner's arguments alike: `by` arrives as the input's object)."""
        given = [
            (key, arguments[key.argument]) for key in self.keys if arguments.get(key.argument) is not None
        ]
        chosen = arguments.get(BY)
        if chosen is not None and chosen is not UNSET:
            for key in self.keys:
                value = getattr(chosen, key.argument, None)
                if value is not None and value is not UNSET:
                    given.append((key, value))
        return given

    def argument_names(self) -> str:
        """The ways to name the row, for an error: "by, id or username"."""
        names = ([BY] if self.one_of else []) + [key.argument for key in self.keys]
        return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]


@dataclass(frozen=True, slots=True)
class ViewerSpec:
    """The viewer's own row (`me`); null for an anonymous request."""


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """Any node by its global ID(s): `node(id:)` (`many` False) and `nodes(ids:)`."""

    many: bool


@dataclass(frozen=True, slots=True)
class EntitySpec:
    """A federation subgraph's `_entities(representations:)`: entity rows by their __typename and
    global ID, read as `nodes(ids:)` reads them (schema/federation.py)."""

    @staticmethod
    def representation(value: Any) -> tuple[str, str] | None:
        """(__typename, id) of a representation, or None where it is not one an entity has."""
        if not isinstance(value, dict):
            return None
        typename, global_id = value.get("__typename"), value.get("id")
        if not isinstance(typename, str) or not isinstance(global_id, str):
            return None
        return typename, global_id


@dataclass(frozen=True, slots=True)
class ResolverOnly:
    """A field that only the resolvers answer, and why (the coverage test lists these)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Condition:
    """A filter input field: the condition its value puts on `column`."""

    column: str
    op: str  # "equals", "contains", "after", "before" or "starts_with"
    id_of: str | None = None  # the value is the global ID of a row of this type
    lower: bool = False  # the value is lower-cased first (usernames are lower case)


@dataclass(frozen=True, slots=True)
class CountCondition:
    """A filter input field (a CountFilter) on how many rows of the node type `of`, among those
    the viewer may see, hold the row's id in their `link` column."""

    of: str
    link: str


@dataclass(frozen=True, slots=True)
class Narrowing:
    """A subscription argument that keeps the events whose `event_field` is the row it names."""

    argument: str  # the Python name: "author_id"
    event_field: str  # "id", "owner_id" or "parent_id" (db/events.py's Event)
    id_of: str  # the type of the global ID it takes
    required: bool = False  # the row must exist, and be one the subscriber may see


@dataclass(frozen=True, slots=True)
class SubscriptionSpec:
    """A stream of the changes to one node type's rows (schema/declare/subscriptions.py)."""

    kinds: tuple[str, ...]  # which changes: ("created",) for `added`, all three for `changed`
    narrowing: tuple[Narrowing, ...]
    row: str | None  # the change type's field that holds the row; None: the field is the row
    login: bool  # only a signed-in viewer may subscribe

    @property
    def resumable(self) -> bool:
        return self.row is not None  # change streams carry cursors and take `after`


Spec = (
    ColumnSpec
    | ExpressionSpec
    | ToOneSpec
    | ConnectionSpec
    | LookupSpec
    | ViewerSpec
    | NodeSpec
    | ResolverOnly
    | Condition
    | CountCondition
    | SubscriptionSpec
)


def spec_of(field: object) -> Spec | None:
    """The declaration a StrawberryField (or a GraphQL field's Strawberry definition) carries."""
    if isinstance(field, StrawberryField):
        found = field.metadata.get(SPEC)
        return found if found is not None else None
    return None


def resolver_only(reason: str) -> dict[str, ResolverOnly]:
    """Metadata for a field only the resolvers answer: `strawberry.field(metadata=resolver_only(...))`."""
    return {SPEC: ResolverOnly(reason)}
