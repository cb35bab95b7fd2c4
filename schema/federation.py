"""An Apollo Federation v2 subgraph (FEDERATION=1): `_service { sdl }` and `_entities`.

The node types declared `entity=True` (schema/declare/nodes.py: User, Post, Comment) are
entities keyed by their global ID, `@key(fields: "id")`. `_entities(representations:)` reads them
the way `nodes(ids:)` does, because it is the same lookup: one compiled statement for every
representation of every type (or, on the resolvers, one statement per type from the loaders),
under the same visibility rules; a representation of any other type is null, whoever asks.

The SDL a gateway composes is the plain schema's (schema.graphql), with the federation link and
the keys, and without what a gateway does not take from a subgraph: the subscriptions (a client
subscribes on Quill itself) and the definitions of @defer and @stream (gateways define their own).
"""

import re
from typing import Annotated, Any, NewType, Optional, Union

import strawberry

from schema.declare import entity_lookup, entity_types
from schema.declare.specs import resolver_only

FEDERATION_LINK = 'extend schema @link(url: "https://specs.apollo.dev/federation/v2.3", import: ["@key"])\n\n'

Any_ = strawberry.scalar(
    NewType("_Any", object),
    name="_Any",
    description="An entity representation: its __typename and its key (`id`).",
    serialize=lambda value: value,
    parse_value=lambda value: value,
)


@strawberry.type(name="_Service")
class Service:
    sdl: str


def federation_queries(plain_sdl: str) -> type:
    """The root fields a subgraph adds to Query, for the schema whose SDL is `plain_sdl`."""
    entities = tuple(node_type.cls for node_type in entity_types())
    entity: Any = Annotated[Union[entities], strawberry.union("_Entity")]  # noqa: UP007 - from a tuple
    sdl = subgraph_sdl(plain_sdl, [node_type.name for node_type in entity_types()])

    @strawberry.type
    class FederationQueries:
        @strawberry.field(
            name="_service",
            metadata=resolver_only("a constant: the subgraph's SDL, printed once at start-up"),
        )
        def service(self) -> Service:
            return Service(sdl=sdl)

        # Evaluated here (no postponed annotations in this module): the union is built above.
        entities_: list[Optional[entity]] = entity_lookup(Any_)  # noqa: UP045

    return FederationQueries


def subgraph_sdl(plain_sdl: str, entity_names: list[str]) -> str:
    """`plain_sdl` as a Federation v2 subgraph describes itself."""
    sdl = _without_block(plain_sdl, r"directive @(defer|stream)\(")
    sdl = _without_block(sdl, r"type Subscription \{")
    for name in entity_names:
        sdl, found = re.subn(
            rf"^(type {name}(?: implements [^{{\n]+)?) \{{", r'\1 @key(fields: "id") {', sdl, flags=re.M
        )
        assert found == 1, f"no type {name} in the SDL"
    return FEDERATION_LINK + sdl


def _without_block(sdl: str, start: str) -> str:
    """`sdl` without the definitions that begin with `start` (up to their closing line, `}` or `)
    on ...`), with the description just before each."""
    lines, kept, skipping = sdl.splitlines(keepends=True), list[str](), False
    for line in lines:
        if not skipping and re.match(start, line):
            skipping = True
            _drop_description(kept)
        if skipping:
            if line.startswith("}") or line.startswith(") on "):
                skipping = False
            continue
        kept.append(line)
    return re.sub(r"\n{3,}", "\n\n", "".join(kept))


def _drop_description(kept: list[str]) -> None:
    """Drop the description that ends `kept` (a block one, or a one-line one)."""
    if kept and kept[-1].rstrip() == '"""':
        kept.pop()
        while kept and kept[-1].rstrip() != '"""':
            kept.pop()
        if kept:
            kept.pop()
    elif kept and kept[-1].startswith('"'):
        kept.pop()


def representation_of(value: Any) -> tuple[str, str] | None:
    """(__typename, id) of a representation, or None where it is not one an entity has."""
    if not isinstance(value, dict):
        return None
    typename, global_id = value.get("__typename"), value.get("id")
    if not isinstance(typename, str) or not isinstance(global_id, str):
        return None
    return typename, global_id
