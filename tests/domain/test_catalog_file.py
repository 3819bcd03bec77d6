"""The catalog loader (R7): the default catalog's figures, and bad files refused by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentbilling.catalog.loader import CatalogError, default_catalog_path, load_catalog
from agentbilling.domain.money import Money
from agentbilling.domain.plans import Catalog


def usd(cents: int) -> Money:
    return Money(cents, "USD")


def plan_json(**overrides) -> dict:
    plan = {
        "id": "starter",
        "name": "Starter",
        "price": {"amount": 4900, "currency": "USD"},
        "included_sessions": 500,
        "overage_price": {"amount": 12, "currency": "USD"},
        "base_session_limit": 1000,
        "max_session_limit": 5000,
    }
    plan.update(overrides)
    return {k: v for k, v in plan.items() if v is not ...}


def write(tmp_path: Path, content: object) -> Path:
    path = tmp_path / "plans.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return path


def load_error(tmp_path: Path, content: object) -> str:
    with pytest.raises(CatalogError) as exc:
        load_catalog(write(tmp_path, content))
    return str(exc.value)


# --- the default catalog ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def default() -> Catalog:
    return load_catalog()


def test_default_catalog_has_the_five_plans_in_order(default):
    assert list(default) == ["starter", "growth", "scale", "outreach", "enterprise"]
    assert len(default) == 5
    assert default_catalog_path().name == "default_plans.json"
    assert list(load_catalog(default_catalog_path())) == list(default)


@pytest.mark.parametrize(
    ("plan_id", "name", "price", "included", "overage", "base", "highest", "tags"),
    [
        ("starter", "Starter", 4900, 500, 12, 1000, 5000, ()),
        ("growth", "Growth", 19900, 2500, 9, 5000, 25000, ()),
        ("scale", "Scale", 79900, 12000, 6, 24000, 200000, ()),
        ("outreach", "Outreach", 14900, 2000, 10, 4000, 20000, ("Answered only",)),
    ],
)
def test_default_catalog_figures_are_design_md(default, plan_id, name, price, included, overage, base, highest, tags):
    p = default[plan_id]
    assert p.id == plan_id and p.name == name
    assert p.price == usd(price)
    assert p.included_sessions == included
    assert p.overage_price == usd(overage)
    assert p.base_session_limit == base
    assert p.max_session_limit == highest
    assert p.tags == tags
    assert p.answered_only is (tags == ("Answered only",))
    assert p.enterprise is False
    assert p.provider_price_id
    assert p.details
    assert p.available_to is None and p.available_for("any-tenant")


def test_default_enterprise_has_no_price(default):
    e = default["enterprise"]
    assert e.name == "Enterprise"
    assert e.enterprise is True
    assert e.price is None
    assert e.overage_price is None
    assert e.base_session_limit is None and e.max_session_limit is None
    assert e.tags == ()


def test_starter_overage_headroom_is_at_most_60_dollars(default):
    # DESIGN.md: up to 500 sessions past what the price includes, at most $60 more.
    s = default["starter"]
    extra = s.base_session_limit - s.included_sessions
    assert extra == 500
    assert s.overage_price.times(extra) == usd(6000)


# --- a good replacement file -----------------------------------------------------------------


def test_an_operator_file_with_optional_fields(tmp_path):
    catalog = load_catalog(
        write(
            tmp_path,
            {
                "plans": [
                    plan_json(id="eu", name="EU", price={"amount": 9900, "currency": "EUR"},
                              overage_price={"amount": 5, "currency": "EUR"}, available_to=["acme"],
                              tags=["Answered only"], details=["One"]),
                    {"id": "big", "name": "Big", "enterprise": True},
                ]
            },
        )
    )
    eu = catalog["eu"]
    assert eu.price == Money(9900, "EUR")
    assert eu.answered_only and eu.tags == ("Answered only",)
    assert eu.available_to == frozenset({"acme"})
    assert [p.id for p in catalog.available_for("acme")] == ["eu", "big"]
    assert [p.id for p in catalog.available_for("other")] == ["big"]
    assert catalog["big"].enterprise and catalog["big"].price is None


# --- bad files -------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(CatalogError, match="no such file"):
        load_catalog(tmp_path / "nope.json")


@pytest.mark.parametrize("text", ["", "{plans: []}", "not json", '{"plans": [}'])
def test_not_json(tmp_path, text):
    assert "not valid JSON" in load_error(tmp_path, text)


def test_missing_price(tmp_path):
    msg = load_error(tmp_path, {"plans": [plan_json(price=...)]})
    assert "plans.0" in msg
    assert "needs price" in msg


def test_missing_limits_name_each_field(tmp_path):
    msg = load_error(tmp_path, {"plans": [plan_json(base_session_limit=..., max_session_limit=...)]})
    assert "base_session_limit" in msg and "max_session_limit" in msg


def test_base_above_max(tmp_path):
    msg = load_error(tmp_path, {"plans": [plan_json(base_session_limit=6000, max_session_limit=5000)]})
    assert "base_session_limit is above max_session_limit" in msg


def test_duplicate_ids(tmp_path):
    msg = load_error(tmp_path, {"plans": [plan_json(), plan_json(name="Again"), plan_json(id="growth")]})
    assert "plan ids appear more than once: starter" in msg
    assert "growth" not in msg


def test_unknown_tag(tmp_path):
    msg = load_error(tmp_path, {"plans": [plan_json(tags=["Cheap"])]})
    assert "plans.0.tags.0" in msg
    assert "Answered only" in msg  # says what is allowed


def test_unknown_field_in_a_plan(tmp_path):
    msg = load_error(tmp_path, {"plans": [plan_json(colour="blue")]})
    assert "plans.0.colour" in msg
    assert "Extra inputs are not permitted" in msg


def test_unknown_top_level_field(tmp_path):
    msg = load_error(tmp_path, {"plans": [plan_json()], "currency": "USD"})
    assert "currency" in msg and "Extra inputs are not permitted" in msg


@pytest.mark.parametrize(
    ("plan", "where"),
    [
        (plan_json(price={"amount": 49.0, "currency": "USD"}), "plans.0.price.amount"),  # minor units only
        (plan_json(price={"amount": -1, "currency": "USD"}), "plans.0.price.amount"),
        (plan_json(price={"amount": 4900, "currency": "usd"}), "plans.0.price.currency"),
        (plan_json(base_session_limit=0), "plans.0.base_session_limit"),
        (plan_json(max_session_limit="5000"), "plans.0.max_session_limit"),
        (plan_json(included_sessions=-5), "plans.0.included_sessions"),
        (plan_json(id="Has Spaces"), "plans.0.id"),
        (plan_json(name=""), "plans.0.name"),
    ],
)
def test_bad_values_name_the_field(tmp_path, plan, where):
    msg = load_error(tmp_path, {"plans": [plan]})
    assert where in msg


def test_mixed_currencies(tmp_path):
    msg = load_error(tmp_path, {"plans": [plan_json(overage_price={"amount": 12, "currency": "EUR"})]})
    assert "different currencies" in msg


def test_reserved_trial_id(tmp_path):
    assert "'trial' is reserved" in load_error(tmp_path, {"plans": [plan_json(id="trial")]})


@pytest.mark.parametrize("content", [{"plans": []}, {}, [], {"plans": "starter"}])
def test_no_plans(tmp_path, content):
    msg = load_error(tmp_path, content)
    assert "is not valid" in msg
    assert str(tmp_path / "plans.json") in msg  # names the file
