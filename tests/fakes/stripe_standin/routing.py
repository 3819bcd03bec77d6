"""Route table and the request/context types the endpoint modules share."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import forms
from .clock import ClockRunner
from .errors import StripeError
from .store import State
from .webhooks import Deliverer


@dataclass
class Services:
    """What endpoints act on."""

    state: State
    clocks: ClockRunner
    webhooks: Deliverer

    @property
    def base_url(self) -> str:
        return self.state.config.base_url


@dataclass
class Request:
    method: str
    path: str
    params: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def expand(self) -> list[str]:
        return forms.expand_paths(self.params)


@dataclass
class Response:
    status: int
    body: Any  # a dict for JSON, a str for HTML
    content_type: str = "application/json"


Handler = Callable[..., Any]


class Router:
    """Maps (method, path pattern with `{name}` parts) to handlers `fn(svc, req, **parts)`."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []

    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        regex = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "$")

        def register(fn: Handler) -> Handler:
            self._routes.append((method, regex, fn))
            return fn

        return register

    def include(self, other: Router) -> None:
        self._routes.extend(other._routes)

    def dispatch(self, svc: Services, req: Request) -> Response:
        allowed = False
        for method, regex, fn in self._routes:
            match = regex.match(req.path)
            if not match:
                continue
            allowed = True
            if method == req.method:
                result = fn(svc, req, **match.groupdict())
                return result if isinstance(result, Response) else Response(200, result)
        if allowed:
            raise StripeError(405, f"Unrecognized request URL ({req.method}: {req.path}).")
        raise StripeError(404, f"Unrecognized request URL ({req.method}: {req.path}). Please see "
                               "https://stripe.com/docs or we can help at https://support.stripe.com/.")
