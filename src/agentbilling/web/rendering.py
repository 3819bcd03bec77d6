"""What every server-rendered page shares: the templates, and numbers, money and dates in the reader's locale."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date as Date
from datetime import datetime as DateTime
from functools import lru_cache
from pathlib import Path
from typing import Any

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_datetime, format_skeleton
from babel.localedata import locale_identifiers
from babel.numbers import format_decimal
from fastapi import Request
from fastapi.templating import Jinja2Templates

from agentbilling.api.schemas import LOCALE, format_money
from agentbilling.domain.card import Badge
from agentbilling.domain.money import Money

templates = Jinja2Templates(directory=Path(__file__).with_name("templates"))

_BADGE_CLASS = {Badge.ACTIVE: "active", Badge.EXPIRED: "expired", Badge.TRIAL_ENDING_SOON: "soon",
                Badge.PAYMENT_ISSUE: "issue", Badge.CANCELED: "issue", Badge.UPCOMING: "soon"}


@lru_cache(maxsize=1)
def _known() -> list[str]:
    return list(locale_identifiers())


def accepted_languages(header: str) -> list[str]:
    """The tags of an Accept-Language header, most wanted first (RFC 9110, 12.5.4)."""
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if tag and tag != "*" and q > 0:
            ranked.append((-q, i, tag.replace("-", "_")))
    return [tag for _, _, tag in sorted(ranked)]


@lru_cache(maxsize=256)
def _negotiate(header: str) -> str:
    try:
        found = Locale.negotiate(accepted_languages(header), _known())
    except (UnknownLocaleError, ValueError):
        found = None
    return str(found) if found else LOCALE


def locale_of(request: Request) -> str:
    """The reader's locale from their browser's Accept-Language; en_US when nothing matches."""
    return _negotiate(request.headers.get("accept-language", "")[:200])


def formatters(locale: str = LOCALE) -> dict[str, Callable[..., str] | str]:
    """The templates' filters-as-functions, for one locale."""
    return {
        "locale": locale,
        "lang": locale.split("_")[0],
        "money": lambda m: format_money(m, locale),
        "amount": lambda minor, currency: format_money(Money(minor, currency), locale),
        "number": lambda n: format_decimal(n, locale=locale),
        "date": lambda d: format_date(d, format="medium", locale=locale) if isinstance(d, Date) else "",
        "short_date": lambda d: format_skeleton("MMMd", d, locale=locale) if isinstance(d, Date) else "",
        "datetime": lambda d: (format_datetime(d, format="medium", tzinfo="UTC", locale=locale) + " UTC")
        if isinstance(d, DateTime) else "",
        "badge_class": lambda b: _BADGE_CLASS.get(b, ""),
    }


FORMATTERS = formatters()


def page(request: Request, name: str, context: dict[str, Any], status: int = 200,
         headers: dict[str, str] | None = None) -> Any:
    """A page in the reader's locale."""
    return templates.TemplateResponse(request, name, {**formatters(locale_of(request)), **context},
                                      status_code=status, headers=headers)
