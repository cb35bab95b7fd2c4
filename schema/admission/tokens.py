"""Access tokens: short-lived signed JWTs (HS256) naming the user, whether they are a superuser,
and the login they belong to; and the revocations that end them early.

Why signed tokens for access and opaque ones for refresh (db/refresh_tokens.py): checking an
access token costs no database query on any of several server processes, and it expires within
minutes; the refresh token is what keeps a login alive. An access token is still ended before
its expiry when its user logs out (that login, or everywhere), changes their password, is
deleted, or loses or gains superuser rights: `Revocations` holds those, as db/revocations.py
stores them and every process hears of them (schema/realtime/revocations.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import jwt

from db.visibility import ANONYMOUS, Viewer
from schema.errors import AuthFailure

ALGORITHM = "HS256"
ISSUER = "quill"


@dataclass(frozen=True, slots=True)
class Authentication:
    """The outcome of reading a request's credentials: a viewer, or why there is none."""

    viewer: Viewer = ANONYMOUS
    failure: AuthFailure | None = None
    expires_at: float | None = None  # the token's exp (seconds since the epoch)
    issued_at: float = 0.0
    login: str | None = None  # the login (refresh token family) the token belongs to

    def failed(self, failure: AuthFailure) -> Authentication:
        return Authentication(failure=failure)


ANONYMOUS_AUTHENTICATION = Authentication()


@dataclass(frozen=True, slots=True)
class Revocation:
    """Every access token of `user_id` issued before `before` (or, with `login`, only those of
    that login) is revoked."""

    user_id: int
    before: float
    login: str | None = None


class Revocations:
    """The revocations of the last access token lifetime, in memory; checked on every request."""

    def __init__(self, ttl_seconds: float) -> None:
        self.ttl_seconds = ttl_seconds
        self._users: dict[int, float] = {}
        self._logins: dict[str, float] = {}

    def add(self, revocation: Revocation) -> None:
        if revocation.login is not None:
            self._logins[revocation.login] = max(self._logins.get(revocation.login, 0.0), revocation.before)
        else:
            self._users[revocation.user_id] = max(self._users.get(revocation.user_id, 0.0), revocation.before)

    def add_all(self, revocations: Iterable[Revocation]) -> None:
        for revocation in revocations:
            self.add(revocation)

    def revokes(self, authentication: Authentication) -> bool:
        user_id = authentication.viewer.id
        if user_id is None:
            return False
        if authentication.issued_at < self._users.get(user_id, 0.0):
            return True
        login = authentication.login
        return login is not None and authentication.issued_at < self._logins.get(login, 0.0)

    def forget_expired(self, now: float | None = None) -> None:
        """A revocation older than a token's lifetime can no longer match a live token."""
        horizon = (now if now is not None else time.time()) - self.ttl_seconds - 60
        self._users = {key: when for key, when in self._users.items() if when >= horizon}
        self._logins = {key: when for key, when in self._logins.items() if when >= horizon}


@dataclass(frozen=True, slots=True)
class AccessTokens:
    """Issues and checks access tokens. A token that checked out is remembered until it expires
    (a client sends the same one with every request for minutes, and the signature and claims of
    a given token never change), so checking it again costs a dictionary lookup; its revocation
    and expiry are checked every time."""

    secret: str
    ttl: timedelta
    revocations: Revocations = field(default_factory=lambda: Revocations(900.0))
    max_remembered: int = 10_000
    _checked: dict[str, Authentication] = field(default_factory=dict, compare=False, repr=False)

    def issue(self, user_id: int, *, is_superuser: bool, login: str | None = None) -> tuple[str, datetime]:
        # iat has sub-second precision: a revocation at time T must not revoke the token a
        # password change issues right after it, in the same second.
        now = time.time()
        expires = now + self.ttl.total_seconds()
        claims: dict[str, object] = {
            "sub": str(user_id),
            "su": is_superuser,
            "iss": ISSUER,
            "iat": now,
            "exp": expires,
        }
        if login is not None:
            claims["sid"] = login
        return jwt.encode(claims, self.secret, algorithm=ALGORITHM), datetime.fromtimestamp(expires, UTC)

    def read(self, token: str) -> Authentication:
        authentication = self._checked.get(token)
        if authentication is None:
            authentication = self._decode(token)
            if authentication.failure is not None:
                return authentication
            self._remember(token, authentication)
        return self.still_valid(authentication)

    def still_valid(self, authentication: Authentication) -> Authentication:
        """The authentication as it stands now: expired or revoked since it was checked?"""
        if authentication.failure is not None or authentication.expires_at is None:
            return authentication
        if time.time() >= authentication.expires_at:
            return authentication.failed(AuthFailure.TOKEN_EXPIRED)
        if self.revocations.revokes(authentication):
            return authentication.failed(AuthFailure.TOKEN_REVOKED)
        return authentication

    def _decode(self, token: str) -> Authentication:
        try:
            claims = jwt.decode(
                token,
                self.secret,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                options={"require": ["exp", "sub", "iat"]},
            )
            viewer = Viewer(id=int(claims["sub"]), is_superuser=bool(claims.get("su")))
            login = claims.get("sid")
            return Authentication(
                viewer,
                expires_at=float(claims["exp"]),
                issued_at=float(claims["iat"]),
                login=login if isinstance(login, str) else None,
            )
        except jwt.ExpiredSignatureError:
            return Authentication(failure=AuthFailure.TOKEN_EXPIRED)
        except (jwt.InvalidTokenError, ValueError, TypeError):
            return Authentication(failure=AuthFailure.TOKEN_INVALID)

    def _remember(self, token: str, authentication: Authentication) -> None:
        if len(self._checked) >= self.max_remembered:
            del self._checked[next(iter(self._checked))]  # the oldest
        self._checked[token] = authentication

    def from_header(self, authorization: str | None) -> Authentication:
        """Read `Authorization: Bearer <token>`; no header means anonymous, not a failure."""
        if not authorization:
            return ANONYMOUS_AUTHENTICATION
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return Authentication(failure=AuthFailure.TOKEN_INVALID)
        return self.read(token.strip())
