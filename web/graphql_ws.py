"""GraphQL over WebSocket at /graphql: graphql-transport-ws and the legacy graphql-ws protocol.

Strawberry's handlers speak both protocols; this view gives them our connection context and
authenticates the connection from its `connection_init` payload:
`{"authorization": "Bearer <access token>"}`. No token means anonymous; an invalid or expired
token closes the connection (graphql-transport-ws: 4403 Forbidden; graphql-ws: connection_error).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.types.unset import UNSET, UnsetType

from schema import Schema
from schema.context import ConnectionContext, Services
from schema.tokens import FAILURE_MESSAGES


class GraphQLWebSocket(GraphQL[ConnectionContext, None]):
    def __init__(self, schema: Schema, services: Services) -> None:
        super().__init__(schema, graphql_ide=None, allowed_origins=services.settings.cors_origins)
        self.services = services

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> ConnectionContext:
        return ConnectionContext(services=self.services, request=request)

    async def on_ws_connect(self, context: ConnectionContext) -> UnsetType | dict[str, object] | None:
        authentication = self.services.tokens.from_header(_authorization(context.connection_params or {}))
        if authentication.failure is not None:
            reason = authentication.failure
            raise ConnectionRejectionError({"message": FAILURE_MESSAGES[reason], "reason": reason.value})
        context.authentication = authentication
        return UNSET


def _authorization(params: dict[str, Any]) -> str | None:
    """The header value from the payload; the spellings clients use ("Authorization", a bare token)."""
    for key, value in params.items():
        if key.lower() == "authorization" and isinstance(value, str):
            return value
    token = params.get("authToken") or params.get("token")
    return f"Bearer {token}" if isinstance(token, str) else None
