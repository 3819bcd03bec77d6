"""R9: the tenant's session limit, its validation and the card's warnings."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentbilling.domain.errors import InvalidInput
from agentbilling.domain.limits import LimitWarning, SessionLimit, effective_limit, validate_limit
from tests.support.domain import GROWTH, OUTREACH, STARTER, UNCAPPED, fast


def limit(limit: int | None, used: int) -> SessionLimit:
    return SessionLimit(limit=limit, base_limit=1000, used=used, custom=False)


def test_warning_strings_are_the_help_pages():
    assert LimitWarning.ALMOST_REACHED == "Session limit almost reached"
    assert LimitWarning.REACHED == "Session limit has been reached"
    assert len(LimitWarning) == 2


@pytest.mark.parametrize(
    ("cap", "used", "warning"),
    [
        (1000, 0, None),
        (1000, 799, None),
        (1000, 800, "Session limit almost reached"),  # exactly 80%
        (1000, 999, "Session limit almost reached"),
        (1000, 1000, "Session limit has been reached"),  # exactly 100%
        (1000, 1200, "Session limit has been reached"),  # running sessions went past it
        (5, 3, None),  # 60%
        (5, 4, "Session limit almost reached"),  # 80%
        (7, 5, None),  # 71%
        (7, 6, "Session limit almost reached"),  # 85.7%
        (1, 0, None),
        (1, 1, "Session limit has been reached"),
        (None, 10**9, None),  # no cap, no warning
    ],
)
def test_warning_thresholds(cap, used, warning):
    w = limit(cap, used).warning
    assert w == warning
    if w is not None:
        assert isinstance(w, LimitWarning)


@fast
@given(cap=st.integers(1, 10**6), used=st.integers(0, 2 * 10**6))
def test_warning_at_80_and_100_percent_exactly(cap, used):
    w = limit(cap, used).warning
    ratio = Fraction(used, cap)
    if ratio >= 1:
        assert w is LimitWarning.REACHED
    elif ratio >= Fraction(4, 5):
        assert w is LimitWarning.ALMOST_REACHED
    else:
        assert w is None


# --- validate_limit --------------------------------------------------------------------------


@pytest.mark.parametrize("value", [1, 500, 1000, 4999, 5000])
def test_validate_limit_accepts_whole_numbers_up_to_the_highest(value):
    assert validate_limit(STARTER, value) == value


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "greater than zero"),
        (-1, "greater than zero"),
        (-5000, "greater than zero"),
        (True, "whole number"),
        (False, "whole number"),
        (1.0, "whole number"),
        (500.5, "whole number"),
        ("500", "whole number"),
        (None, "whole number"),
        ([500], "whole number"),
        (5001, "above 5,000"),
        (10**9, "above 5,000"),
    ],
)
def test_validate_limit_rejects(value, message):
    with pytest.raises(InvalidInput) as exc:
        validate_limit(STARTER, value)
    assert message in exc.value.detail
    assert exc.value.code == "invalid-request"


def test_validate_limit_above_max_names_the_plan():
    with pytest.raises(InvalidInput, match="the highest limit of the Growth plan"):
        validate_limit(GROWTH, 25001)
    assert validate_limit(GROWTH, 25000) == 25000


@fast
@given(value=st.integers(-10**6, 10**7))
def test_validate_limit_property(value):
    ok = 0 < value <= STARTER.max_session_limit
    if ok:
        assert validate_limit(STARTER, value) == value
    else:
        with pytest.raises(InvalidInput):
            validate_limit(STARTER, value)


@fast
@given(value=st.integers(1, 10**12))
def test_a_plan_without_a_highest_limit_takes_any_positive_limit(value):
    assert validate_limit(UNCAPPED, value) == value


@fast
@given(value=st.floats(allow_nan=True) | st.text(max_size=5) | st.booleans())
def test_validate_limit_rejects_non_integers(value):
    with pytest.raises(InvalidInput):
        validate_limit(STARTER, value)


# --- effective_limit -------------------------------------------------------------------------


def test_effective_limit_without_custom_is_the_base_limit():
    assert effective_limit(STARTER, None) == 1000
    assert effective_limit(OUTREACH, None) == 4000
    assert effective_limit(UNCAPPED, None) is None


def test_effective_limit_keeps_a_custom_limit_within_the_highest():
    assert effective_limit(STARTER, 500) == 500
    assert effective_limit(STARTER, 5000) == 5000
    assert effective_limit(STARTER, 2000) == 2000  # above base, below highest


def test_effective_limit_lowers_a_custom_limit_to_the_highest():
    # A Growth tenant's 20,000 after a change to Starter (R8).
    assert effective_limit(STARTER, 20000) == 5000


@fast
@given(custom=st.one_of(st.none(), st.integers(1, 10**6)))
def test_effective_limit_property(custom):
    got = effective_limit(STARTER, custom)
    if custom is None:
        assert got == STARTER.base_session_limit
    else:
        assert got == min(custom, STARTER.max_session_limit)
        assert got <= STARTER.max_session_limit
    assert effective_limit(UNCAPPED, custom) == custom


def test_a_tenants_own_limit_survives_a_plan_change_lowered_to_the_new_highest():
    from agentbilling.catalog import load_catalog
    from agentbilling.domain.limits import kept_limit

    catalog = load_catalog()
    assert kept_limit(None, catalog["growth"]) is None  # the new plan's base limit applies
    assert kept_limit(3000, catalog["growth"]) == 3000  # R8: the tenant's own limit stays
    assert kept_limit(20000, catalog["starter"]) == 5000  # lowered to Starter's highest
    assert kept_limit(10**9, catalog["enterprise"]) == 10**9  # no highest limit on the plan
