"""Strawberry converts each argument's name (snake_case to camelCase) on every resolver call,
for every argument the field has; the answer never changes, so remember it."""

from __future__ import annotations

from typing import Any

from strawberry.schema.name_converter import NameConverter


class RememberingNameConverter(NameConverter):
    def __init__(self) -> None:
        super().__init__(auto_camel_case=True)
        self._arguments: dict[int, str] = {}

    def from_argument(self, argument: Any) -> str:
        # Arguments live as long as the schema, so their identity is a stable key.
        name = self._arguments.get(id(argument))
        if name is None:
            name = self._arguments[id(argument)] = super().from_argument(argument)
        return name
