"""Input rules. Every message names the field and the rule, so a client can show it by the field.

Usernames: 1-50 characters of lower-case letters a-z, digits 0-9, '.', '_' and '-'; input is
lower-cased first, so "Ada" registers as "ada" and nobody can take "ADA" next to it.
Emails: a real address syntax (email-validator, no DNS lookup), at most 120 characters, stored
lower-cased. Passwords: 8 to 256 characters.
"""

from __future__ import annotations

import re
from typing import Any

from email_validator import EmailNotValidError, validate_email
from strawberry import UNSET

from schema.errors import Refused, validation_error

USERNAME = re.compile(r"[a-z0-9._-]{1,50}")
EMAIL_MAX = 120
PASSWORD_MIN, PASSWORD_MAX = 8, 256
POST_TITLE_MAX = 100
POST_CONTENT_MAX = 100_000
TASK_TITLE_MAX = 255
NOTE_BODY_MAX = 10_000
MAX_NOTES_AT_ONCE = 20


class Checker:
    """Collects one problem per field; each method returns the cleaned value (or UNSET if omitted)."""

    def __init__(self) -> None:
        self.problems: dict[str, str] = {}

    def done(self) -> None:
        """Refuse the mutation (with every problem found) if any field broke a rule."""
        if self.problems:
            raise Refused(validation_error(self.problems))

    def _present(self, field: str, value: Any) -> bool:
        """False for an omitted field (nothing to check); an explicit null is a problem."""
        if value is UNSET:
            return False
        if value is None:
            self.problems[field] = f"{field} must not be null."
            return False
        if isinstance(value, str) and "\x00" in value:
            # PostgreSQL text cannot hold it; no engine stores it, so every engine answers alike.
            self.problems[field] = f"{field} must not contain the NUL character (U+0000)."
            return False
        return True

    def given(self, field: str, value: Any) -> Any:
        """A field with no rule beyond "not null" (an enum, say)."""
        return value if self._present(field, value) else UNSET

    def text(self, field: str, value: Any, *, max_length: int) -> Any:
        if not self._present(field, value):
            return UNSET
        cleaned = value.strip()
        if not cleaned:
            self.problems[field] = f"{field} must not be empty."
        elif len(cleaned) > max_length:
            self.problems[field] = f"{field} must be at most {max_length} characters (got {len(cleaned)})."
        return cleaned

    def username(self, field: str, value: Any) -> Any:
        if not self._present(field, value):
            return UNSET
        cleaned = value.strip().lower()
        if not USERNAME.fullmatch(cleaned):
            self.problems[field] = (
                f"{field} must be 1 to 50 characters of letters a-z, digits, '.', '_' or '-'."
            )
        return cleaned

    def email(self, field: str, value: Any) -> Any:
        if not self._present(field, value):
            return UNSET
        try:
            cleaned = validate_email(value.strip(), check_deliverability=False).normalized.lower()
        except EmailNotValidError as exc:
            self.problems[field] = f"{field} is not a valid email address: {exc}"
            return value
        if len(cleaned) > EMAIL_MAX:
            self.problems[field] = f"{field} must be at most {EMAIL_MAX} characters."
        return cleaned

    def password(self, field: str, value: Any) -> Any:
        if not self._present(field, value):
            return UNSET
        if not PASSWORD_MIN <= len(value) <= PASSWORD_MAX:
            self.problems[field] = f"{field} must be {PASSWORD_MIN} to {PASSWORD_MAX} characters long."
        return value


def changes(**values: Any) -> dict[str, Any]:
    """The given (not UNSET) values, by column name: what a partial update writes."""
    return {column: value for column, value in values.items() if value is not UNSET}
