"""The rules for ids and named choices given to the service (domain/inputs.py)."""

from __future__ import annotations

import pytest

from agentbilling.domain.errors import InvalidInput
from agentbilling.domain.inputs import choice, identifier, tenant_identifier
from agentbilling.domain.metering import Direction


@pytest.mark.parametrize("value", ["conv-1", "x" * 200, "ünïcode id", "a/b"])
def test_an_identifier_is_kept_as_given(value):
    assert identifier(value, "id") == value


@pytest.mark.parametrize(("value", "says"), [
    ("", "id must be a non-empty string."),
    ("   ", "id must be a non-empty string."),
    (None, "id must be a non-empty string."),
    (42, "id must be a non-empty string."),
    ("x" * 201, "id is longer than 200 characters."),
    ("a\x00b", "id must not contain control characters."),
    ("a\nb", "id must not contain control characters."),
    ("a\x85b", "id must not contain control characters."),
])
def test_a_bad_identifier_is_refused_with_what_is_wrong(value, says):
    with pytest.raises(InvalidInput) as refused:
        identifier(value, "id")
    assert str(refused.value) == says


def test_a_tenant_id_is_at_most_64_characters():
    assert tenant_identifier("t" * 64) == "t" * 64
    with pytest.raises(InvalidInput, match="^id is longer than 64 characters.$"):
        tenant_identifier("t" * 65)
    with pytest.raises(InvalidInput, match="^id is longer than 200 characters.$"):
        tenant_identifier("t" * 201)


def test_a_choice_is_one_of_the_values():
    assert choice(Direction, "inbound", "direction") is Direction.INBOUND
    assert choice(Direction, Direction.OUTBOUND, "direction") is Direction.OUTBOUND
    with pytest.raises(InvalidInput) as refused:
        choice(Direction, "sideways", "direction")
    assert str(refused.value) == "direction must be one of 'inbound', 'outbound', not 'sideways'."
