"""What an identifier or a named choice given to the service must look like: parsed, or InvalidInput."""

from __future__ import annotations

import re
from enum import Enum
from typing import TypeVar

from agentbilling.domain.errors import InvalidInput

E = TypeVar("E", bound=Enum)

LONGEST_ID = 200  # characters
LONGEST_TENANT_ID = 64
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # never in an id (PostgreSQL cannot even store a NUL)


def identifier(value: object, what: str) -> str:
    """A caller's id (a session's, an agent's, a user's): a non-empty string, printable, not too long."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{what} must be a non-empty string.")
    if len(value) > LONGEST_ID:
        raise InvalidInput(f"{what} is longer than {LONGEST_ID} characters.")
    if _CONTROL.search(value):
        raise InvalidInput(f"{what} must not contain control characters.")
    return value


def tenant_identifier(value: object) -> str:
    """A new tenant's id: an `identifier`, and short enough to sit in other keys."""
    tenant_id = identifier(value, "id")
    if len(tenant_id) > LONGEST_TENANT_ID:
        raise InvalidInput(f"id is longer than {LONGEST_TENANT_ID} characters.")
    return tenant_id


def choice(kind: type[E], value: object, what: str) -> E:
    """One of an enumeration's values (`Direction`, `Sender`), named by its value."""
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in kind)
        raise InvalidInput(f"{what} must be one of {allowed}, not {value!r}.") from None
