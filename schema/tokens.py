"""Access tokens: short-lived signed JWTs (HS256) naming the user and whether they are a superuser.

Why signed tokens for access and opaque ones for refresh (db/refresh_tokens.py): checking an
access token costs no database query on any of several server processes, and it expires within
minutes; the refresh token is what keeps a login alive, so it is the one we must be able to
revoke, and revocation needs a row to mark.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum

import jwt

from db.models import utcnow
from db.visibility import ANONYMOUS, Viewer

ALGORITHM = "HS256"
ISSUER = "quill"


class AuthFailure(Enum):
    """Why a request has no viewer. Values are what clients read in `reason`."""

    NOT_LOGGED_IN = "NOT_LOGGED_IN"
    TOKEN_INVALID = "TOKEN_INVALID"
    TOKEN_EXPIRED = "TOKEN_EXPIRED"
    ACCOUNT_GONE = "ACCOUNT_GONE"
    BAD_CREDENTIALS = "BAD_CREDENTIALS"
    REFRESH_TOKEN_REFUSED = "REFRESH_TOKEN_REFUSED"


FAILURE_MESSAGES = {
    AuthFailure.NOT_LOGGED_IN: "Log in first: send an access token as `Authorization: Bearer <token>`.",
    AuthFailure.TOKEN_INVALID: "The access token is not valid; log in again.",
    AuthFailure.TOKEN_EXPIRED: "The access token has expired; get a new one with refreshToken.",
    AuthFailure.ACCOUNT_GONE: "Your account no longer exists.",
    AuthFailure.BAD_CREDENTIALS: "Wrong username, email or password.",
}


@dataclass(frozen=True, slots=True)
class Authentication:
    """The outcome of reading a request's credentials: a viewer, or why there is none."""

    viewer: Viewer = ANONYMOUS
    failure: AuthFailure | None = None


@dataclass(frozen=True, slots=True)
class AccessTokens:
    """Issues and checks access tokens. A token that checked out is remembered until it expires
    (a client sends the same one with every request for minutes, and the signature and claims of
    a given token never change), so checking it again costs a dictionary lookup."""

    secret: str
    ttl: timedelta
    max_remembered: int = 10_000
    _checked: dict[str, tuple[Authentication, float]] = field(default_factory=dict, compare=False, repr=False)

    def issue(self, user_id: int, *, is_superuser: bool) -> tuple[str, datetime]:
        now = utcnow()
        expires = now + self.ttl
        claims = {"sub": str(user_id), "su": is_superuser, "iss": ISSUER, "iat": now, "exp": expires}
        return jwt.encode(claims, self.secret, algorithm=ALGORITHM), expires

    def read(self, token: str) -> Authentication:
        checked = self._checked.get(token)
        if checked is not None and time.time() < checked[1]:
            return checked[0]
        try:
            claims = jwt.decode(
                token, self.secret, algorithms=[ALGORITHM], issuer=ISSUER, options={"require": ["exp", "sub"]}
            )
            viewer = Viewer(id=int(claims["sub"]), is_superuser=bool(claims.get("su")))
            authentication = Authentication(viewer)
            self._remember(token, authentication, float(claims["exp"]))
            return authentication
        except jwt.ExpiredSignatureError:
            return Authentication(failure=AuthFailure.TOKEN_EXPIRED)
        except (jwt.InvalidTokenError, ValueError):
            return Authentication(failure=AuthFailure.TOKEN_INVALID)

    def _remember(self, token: str, authentication: Authentication, expires: float) -> None:
        if len(self._checked) >= self.max_remembered:
            del self._checked[next(iter(self._checked))]  # the oldest
        self._checked[token] = (authentication, expires)

    def from_header(self, authorization: str | None) -> Authentication:
        """Read `Authorization: Bearer <token>`; no header means anonymous, not a failure."""
        if not authorization:
            return Authentication()
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return Authentication(failure=AuthFailure.TOKEN_INVALID)
        return self.read(token.strip())
